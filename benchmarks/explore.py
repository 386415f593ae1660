"""Latency of the explorer's slider moves, from an export and through the strict TensorFlow Serving fake.

    python benchmarks/explore.py --export mlp=saved_models --export conv=conv_models \\
        --data-dir ../shared/data/mnist --split 'test[8000:]'
    python benchmarks/explore.py --export mlp=saved_models --data-dir ../shared/data/mnist \\
        --screenshot docs/images/explore.png       # also the README's picture, taken by chromium

Prints one machine-readable line per model and backend, e.g.
    model=mlp backend=export p50_ms=... p99_ms=... moves=...
A move is what the page does when a slider moves: POST /api/traverse (the chosen image's latent, the
sliders' offsets) to the explorer's server on the loopback, and the answer read into a uint8 array of
the decoded picture. `export` loads the SavedModel in the explorer's process; `fake` relays each move
to tests/fake_serving.py's REST fake (a TF1 session as TensorFlow Serving runs, and a rapidjson-like
JSON reader written in Python, slower than the server's own).
"""

import argparse
import base64
import contextlib
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


@contextlib.contextmanager
def serving(explorer):
    """The explorer's server on a free loopback port; yields "host:port"."""
    from keras_vae.explore import make_server

    server = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def time_moves(address, latent, sliders, moves, warmup):
    """Milliseconds of each of `moves` slider moves (after `warmup`), over one keep-alive connection."""
    import numpy as np

    connection = http.client.HTTPConnection(address, timeout=60)
    times = []
    for move in range(warmup + moves):
        offsets = [0.0] * sliders
        offsets[move % sliders] = 3.0 * np.sin(move / 7.0)
        body = json.dumps({"z": latent, "basis": "pca", "offsets": offsets})
        start = time.perf_counter()
        connection.request("POST", "/api/traverse", body=body, headers={"Content-Type": "application/json"})
        answer = json.loads(connection.getresponse().read())
        picture = np.frombuffer(base64.b64decode(answer["images"]["pixels"]), np.uint8)
        elapsed = time.perf_counter() - start
        assert picture.size == np.prod(answer["images"]["shape"])
        if move >= warmup:
            times.append(elapsed * 1000)
    connection.close()
    return times


def screenshot(url, path):
    """Saves chromium's picture of the page at `url` once it has drawn, after a slider move."""
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1180",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        driver.get(url)
        drawn = ("return ['samples', 'traversed', 'strip'].every((id) => "
                 "document.getElementById(id).dataset.draws)")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(drawn))
        slider = driver.find_elements(By.CSS_SELECTOR, "#sliders .slider")[0]
        ActionChains(driver).click_and_hold(slider).move_by_offset(45, 0).release().perform()
        the_map = driver.find_element(By.ID, "map")
        ActionChains(driver).move_to_element_with_offset(the_map, 40, -60).perform()
        time.sleep(1.0)
        driver.save_screenshot(str(path))
    finally:
        driver.quit()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", action="append", required=True, metavar="NAME=DIR",
                        help="an export root to measure, named (repeat for each model)")
    parser.add_argument("--data-dir", required=True, help="IDX files of the map's split")
    parser.add_argument("--split", default="test[8000:]")
    parser.add_argument("--map-points", type=int, default=500)
    parser.add_argument("--moves", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--backends", default="export,fake")
    parser.add_argument("--screenshot", help="write chromium's picture of the first model's page here")
    args = parser.parse_args(argv)

    import fake_rest
    import fake_serving
    import numpy as np

    from keras_vae.config import ExploreConfig
    from keras_vae.explore import build_explorer

    for number, named in enumerate(args.export):
        name, root = named.split("=", 1)
        options = {"export_dir": root, "data_dir": args.data_dir, "split": args.split,
                   "map_points": args.map_points}
        for backend in args.backends.split(","):
            with contextlib.ExitStack() as stack:
                if backend == "fake":
                    core = fake_serving.ModelServer(root)
                    stack.callback(core.close)
                    url, _ = stack.enter_context(fake_rest.rest_server(core))
                    explorer = build_explorer(ExploreConfig(server=url, **options))
                else:
                    explorer = build_explorer(ExploreConfig(**options))
                address = stack.enter_context(serving(explorer))
                if args.screenshot and number == 0 and backend == "export":
                    screenshot(f"http://{address}/", args.screenshot)
                latent = explorer.atlas.means[0].tolist()
                times = time_moves(address, latent, explorer.atlas.sliders["pca"], args.moves, args.warmup)
                print(f"model={name} backend={backend} p50_ms={np.percentile(times, 50):.2f} "
                      f"p99_ms={np.percentile(times, 99):.2f} moves={len(times)}", flush=True)


if __name__ == "__main__":
    main()
