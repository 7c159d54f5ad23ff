from __future__ import annotations

import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
from PIL import Image

from vidseg.errors import DataFormatError
from vidseg.io.video import VideoWriter, natural_key, open_video, resized_shape


def _frames(n: int, h: int = 64, w: int = 96) -> list[np.ndarray]:
    out = []
    for t in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = (np.arange(w)[None, :] * 2 + t * 5) % 256
        f[..., 1] = (np.arange(h)[:, None] * 3) % 256
        f[10:30, 5 + t : 25 + t, 2] = 255
        out.append(f)
    return out


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    with VideoWriter(path, fps=25) as w:
        for f in _frames(20):
            w.write(f)
    return path


def test_writer_output_readable_by_pyav_with_frame_count_and_fps(mp4):
    with av.open(str(mp4)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert float(s.average_rate) == 25
        assert sum(1 for _ in c.decode(s)) == 20


def test_read_mp4_stream_info_and_content(mp4):
    video = open_video(mp4)
    assert video.info.fps == 25 and video.info.num_frames == 20
    assert (video.info.height, video.info.width) == (64, 96)
    frames = list(video)
    assert len(frames) == 20 and frames[0].shape == (64, 96, 3) and frames[0].dtype == np.uint8
    # lossy, but close to what was written
    assert np.abs(frames[3].astype(int) - _frames(20)[3].astype(int)).mean() < 8


def test_read_is_a_generator_and_reiterable(mp4):
    video = open_video(mp4)
    it = iter(video)
    assert next(it).shape == (64, 96, 3)
    assert len(list(video)) == 20


def test_stride_and_short_side_resize(mp4):
    video = open_video(mp4, short_side=32, stride=3)
    frames = list(video)
    assert len(frames) == 7 == video.info.num_frames
    assert frames[0].shape == (32, 48, 3)
    assert video.info.fps == pytest.approx(25 / 3)


def test_odd_size_frames_are_padded_for_h264(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=10) as w:
        for f in _frames(3, 33, 51):
            w.write(f)
    assert open_video(path).info.height == 34


def test_frame_folder_natural_sort_and_resize(tmp_path):
    frames = _frames(12)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"frame{t}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    video = open_video(tmp_path, short_side=32)
    out = list(video)
    assert len(out) == 12 and video.info.num_frames == 12 and video.info.fps is None
    # natural sort: frame2 comes before frame10; resized PNG of frame 10 matches
    expected = np.asarray(Image.fromarray(frames[10]).resize((48, 32), Image.BILINEAR))
    np.testing.assert_array_equal(out[10], expected)
    assert natural_key("frame2.png") < natural_key("frame10.png")


def test_single_image(tmp_path):
    Image.fromarray(_frames(1)[0]).save(tmp_path / "a.jpg")
    frames = list(open_video(tmp_path / "a.jpg"))
    assert len(frames) == 1 and frames[0].shape == (64, 96, 3)


def test_iterable_of_arrays_streams_lazily():
    consumed = []

    def gen():
        for t, f in enumerate(_frames(5)):
            consumed.append(t)
            yield f

    video = open_video(gen(), stride=2)
    it = iter(video)
    next(it)
    assert consumed == [0]
    assert len(list(it)) == 2


def test_iterable_gray_frames_become_rgb_and_bad_dtype_rejected():
    out = list(open_video([np.zeros((4, 5), np.uint8)]))
    assert out[0].shape == (4, 5, 3)
    with pytest.raises(DataFormatError, match="uint8"):
        list(open_video([np.zeros((4, 5, 3), np.float32)]))


def test_resized_shape_keeps_aspect():
    assert resized_shape(720, 1280, 360) == (360, 640)
    assert resized_shape(100, 50, None) == (100, 50)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no frames"),
        (lambda d: (d / "notes.txt").write_text("hi") and d / "notes.txt", "unsupported file type"),
        (lambda d: (d / "zero.mp4").write_bytes(b"") or d / "zero.mp4", "empty"),
        (lambda d: (d / "junk.mp4").write_bytes(b"\x00garbage" * 500) and d / "junk.mp4", "cannot decode"),
        (lambda d: (d / "bad.jpg").write_bytes(b"not a jpeg") and d / "bad.jpg", "cannot read image"),
    ],
)
def test_bad_sources_raise_data_format_error_with_path(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(DataFormatError, match=match) as info:
        list(open_video(path))
    assert str(path) in str(info.value)


def test_truncated_mp4_raises_or_stops_cleanly(mp4, tmp_path):
    data = mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=str(cut)):
        list(open_video(cut))


def test_streaming_500_frames_720p_keeps_rss_growth_under_100mb(tmp_path):
    path = tmp_path / "long.mp4"
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[..., 1] = np.arange(1280)[None, :] % 256
    with VideoWriter(path, fps=30, preset="ultrafast") as w:
        for t in range(500):
            frame[200:400, (t * 2) % 1000 : (t * 2) % 1000 + 200, 0] = t % 256
            w.write(frame)
    script = textwrap.dedent(
        f"""
        from vidseg.io.video import open_video
        def rss():
            with open("/proc/self/statm") as f:
                import os
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        it = iter(open_video({str(path)!r}))
        next(it)
        base = peak = rss()
        n = 1
        for frame in it:
            n += 1
            peak = max(peak, rss())
        print(n, (peak - base) / 2**20)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    n, growth_mb = out.stdout.split()
    assert int(n) == 500
    assert float(growth_mb) < 100, f"RSS grew {growth_mb} MB"
