"""Headless Chromium with fake capture devices fed from a clip (the browser test and
``benchmarks/stream_quality.py --screenshot``).  Needs Debian's ``chromium`` and
``chromium-driver`` and the ``selenium`` package; :func:`missing` says what is absent."""
import os
import shutil
import socket
import subprocess
import threading
import time

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,820", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--autoplay-policy=no-user-gesture-required")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def missing():
    """A reason string when the browser cannot run here, else None."""
    if chromium() is None or not shutil.which("chromedriver"):
        return "Chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install selenium)"
    return None


def fake_media(clip, out_dir, fps=10):
    """``(clip.y4m, clip.wav)`` for Chromium's fake camera and microphone (bundled ffmpeg)."""
    import imageio_ffmpeg
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    y4m, wav = os.path.join(out_dir, "clip.y4m"), os.path.join(out_dir, "clip.wav")
    subprocess.run([ff, "-nostdin", "-y", "-v", "error", "-i", clip, "-an", "-pix_fmt", "yuv420p", "-r", str(fps),
                    y4m], check=True)
    subprocess.run([ff, "-nostdin", "-y", "-v", "error", "-i", clip, "-vn", "-ac", "1", "-ar", "48000",
                    "-c:a", "pcm_s16le", wav], check=True)
    return y4m, wav


def driver(clip, work_dir):
    """A selenium Chrome driver whose camera and microphone play ``clip`` (looped)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    y4m, wav = fake_media(clip, work_dir)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium()
    for flag in FLAGS + (f"--user-data-dir={os.path.join(work_dir, 'profile')}",
                         f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


class Server:
    """The live app under uvicorn on a free loopback port, in a thread (``with Server(app) as url``)."""

    def __init__(self, app):
        import uvicorn
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                break
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/live/"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def wait_for(drv, script, timeout):
    """Poll a JavaScript expression until it is truthy (or ``timeout`` seconds pass)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = drv.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.25)
    return drv.execute_script("return " + script)


def live_session(url, clip, work_dir, windows, screenshot=None, timeout=60):
    """Open the page, start camera + microphone, wait for ``windows`` windows, screenshot (while
    streaming), stop; returns ``(rows, summary, error)`` as the page received them."""
    drv = driver(clip, work_dir)
    try:
        drv.get(url)
        wait_for(drv, "!!window.liveState.info", 20)
        drv.find_element("id", "start").click()
        wait_for(drv, f"window.liveRows.length >= {int(windows)}", timeout)
        if screenshot:
            drv.save_screenshot(screenshot)
        drv.execute_script("window.liveStop()")
        wait_for(drv, "!!window.liveSummary", 20)
        return (drv.execute_script("return window.liveRows"), drv.execute_script("return window.liveSummary || null"),
                drv.execute_script("return window.liveError || null"))
    finally:
        drv.quit()
