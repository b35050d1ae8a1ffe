"""placeholder"""
from tinyfast.loaders import register
register("dali")(None); register("dali-native")(None)
