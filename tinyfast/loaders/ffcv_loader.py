"""placeholder"""
from tinyfast.loaders import register
register("ffcv")(None)
