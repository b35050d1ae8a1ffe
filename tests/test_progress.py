"""Progress output: plain lines in a log, nothing with disable, tqdm only on a terminal."""
import io

from tinyfast import progress as P


def test_lines_mode_prints_plain_lines(monkeypatch):
    monkeypatch.setenv("TINYFAST_PROGRESS", "lines")
    out = []
    bar = P.progress(total=10, desc="decode", unit="img", interval=0.0, log=out.append)
    assert isinstance(bar, P.LineProgress)
    with bar:
        for _ in range(10):
            bar.update(1)
            bar.set_postfix(loss="1.234")
    assert len(out) == 11  # one per update (interval 0) + the final line
    assert out[4].startswith("decode: 5/10 (50%)") and "ETA" in out[4] and "loss=1.234" in out[4]
    assert out[-1].startswith("decode: 10/10 (100%)") and " in " in out[-1]
    assert all("\r" not in s and "\x1b" not in s for s in out)


def test_interval_limits_lines(monkeypatch):
    monkeypatch.setenv("TINYFAST_PROGRESS", "lines")
    out = []
    for _ in P.progress(range(1000), desc="x", interval=3600, log=out.append):
        pass
    assert out == [out[-1]] and out[-1].startswith("x: 1000/1000")


def test_disable_and_off(monkeypatch):
    out = []
    monkeypatch.setenv("TINYFAST_PROGRESS", "lines")
    with P.progress(total=3, disable=True, interval=0, log=out.append) as bar:
        bar.update(3)
    monkeypatch.setenv("TINYFAST_PROGRESS", "off")
    with P.progress(total=3, interval=0, log=out.append) as bar:
        bar.update(3)
    assert out == []


def test_mode_follows_the_stream(monkeypatch):
    monkeypatch.delenv("TINYFAST_PROGRESS", raising=False)

    class TTY(io.StringIO):
        def isatty(self):
            return True

    assert P.mode(io.StringIO()) == "lines"
    assert P.mode(TTY()) == "bar"


def test_byte_counts_are_in_human_units(monkeypatch):
    """``unit_scale`` (as for tqdm): counts and rates in k/M/G, e.g. ``519.5 MB/s``, not 519,542,690.9 B/s."""
    monkeypatch.setenv("TINYFAST_PROGRESS", "lines")
    out = []
    now = [100.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: now[0])
    with P.progress(total=3_000_000_000, desc="verify", unit="B", unit_scale=True, interval=0.0,
                    log=out.append) as bar:
        now[0] += 2.0
        bar.update(1_039_085_381)  # 519,542,690.5 B/s over 2 s
    assert out[0] == "verify: 1.04/3.00 GB (35%) 519.5 MB/s ETA 4s", out
    assert out[-1].startswith("verify: 1.04/3.00 GB (35%) 519.5 MB/s in 2s"), out
