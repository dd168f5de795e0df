#!/usr/bin/env python3
"""A minimal WebDriver client (standard library only) that drives headless Chromium through
chromedriver for the demo page test (scripts/www.sh test).

    webdriver.py CHROMEDRIVER_URL CAPABILITIES_JSON SCRIPT_JSON

SCRIPT_JSON is a list of steps, run in order; the first that fails ends the run with exit 1:
  {"open": URL}                                   navigate
  {"reload": true}                                reload the page
  {"title": PREFIX, "timeout": SECONDS}           wait until document.title starts with PREFIX
                                                  (fails at once on a title `error: ...`)
  {"eval": JS, "expect": VALUE}                   `return (JS)` must give VALUE
  {"run": COMMAND}                                run a shell command (e.g. stop a peer); its
                                                  environment has PAGE_TITLE, the title the
                                                  last title step saw
  {"cdp": METHOD, "params": {...}, "save": FILE}  a Chrome DevTools Protocol command through
                                                  chromedriver (e.g. Profiler.start); "save"
                                                  (optional) writes its result to FILE as JSON
Waits poll the title every 100 ms; each has its own bound, so the run always ends.
"""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request


def call(base, method, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")["value"]
    except urllib.error.HTTPError as e:
        # chromedriver's error body says what went wrong (e.g. Chromium failed to start).
        raise RuntimeError(f"{method} {path}: HTTP {e.code}: {e.read()[:2000]!r}") from None


def main():
    base, caps_file, steps_json = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(caps_file) as f:
        caps = json.load(f)
    steps = json.loads(steps_json)
    # The page's console, shown when a step fails.
    caps["goog:loggingPrefs"] = {"browser": "ALL"}
    # Starting Chromium on a busy machine can take a while.
    session = call(base, "POST", "/session", {"capabilities": {"alwaysMatch": caps}},
                   timeout=120)["sessionId"]
    s = f"/session/{session}"
    ok = False
    env = dict(os.environ)
    try:
        for step in steps:
            if "open" in step:
                call(base, "POST", s + "/url", {"url": step["open"]})
            elif "reload" in step:
                call(base, "POST", s + "/refresh", {})
            elif "title" in step:
                deadline = time.monotonic() + step.get("timeout", 60)
                title = ""
                while time.monotonic() < deadline:
                    title = call(base, "GET", s + "/title")
                    if title.startswith(step["title"]) or title.startswith("error:"):
                        break
                    time.sleep(0.1)
                if not title.startswith(step["title"]):
                    print(f"webdriver: waited for a title {step['title']!r}, got {title!r}",
                          file=sys.stderr)
                    return 1
                print(f"webdriver: title {title!r}", file=sys.stderr)
                env["PAGE_TITLE"] = title
            elif "eval" in step:
                got = call(base, "POST", s + "/execute/sync",
                           {"script": f"return ({step['eval']})", "args": []})
                if "expect" in step and got != step["expect"]:
                    print(f"webdriver: {step['eval']} gave {got!r}, expected {step['expect']!r}",
                          file=sys.stderr)
                    return 1
                print(f"webdriver: {step['eval']} = {got!r}", file=sys.stderr)
            elif "cdp" in step:
                got = call(base, "POST", s + "/goog/cdp/execute",
                           {"cmd": step["cdp"], "params": step.get("params", {})})
                if "save" in step:
                    with open(step["save"], "w") as f:
                        json.dump(got, f)
                print(f"webdriver: cdp {step['cdp']}", file=sys.stderr)
            elif "run" in step:
                r = subprocess.run(step["run"], shell=True, env=env)
                if r.returncode != 0:
                    print(f"webdriver: {step['run']!r} exited with {r.returncode}", file=sys.stderr)
                    return 1
            else:
                print(f"webdriver: unknown step {step!r}", file=sys.stderr)
                return 1
        ok = True
    finally:
        if not ok:
            try:
                text = call(base, "POST", s + "/execute/sync",
                            {"script": "return document.body.innerText", "args": []})
                print("webdriver: the page says:\n" + text, file=sys.stderr)
                for entry in call(base, "POST", s + "/se/log", {"type": "browser"}) or []:
                    print("webdriver: console: " + entry.get("message", ""), file=sys.stderr)
            except Exception as e:  # the page may be gone
                print(f"webdriver: could not read the page: {e}", file=sys.stderr)
        try:
            call(base, "DELETE", s)
        except Exception as e:  # chromedriver may be gone; its process group is killed anyway
            print(f"webdriver: could not end the session: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
