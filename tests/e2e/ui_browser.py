"""The dashboard in a real headless browser (Debian's chromium and chromium-driver, Selenium
from PyPI), one browser session for every check: run by tests/ui_dashboard.rs as
`python3 ui_browser.py ROOT ADMIN_KEY CLIENT_KEY SCREENSHOT_DIR`.

Sign in, every page renders with no console error, the overview's and the keys page's numbers
match /admin/stats after a scripted workload, a key created in the page works for a request and
is revoked from the page, a request's detail shows its body with the key redacted, it reads in
a phone-sized window and in dark mode, and once signed out no data call gets through without
the key. A screenshot of each page goes to SCREENSHOT_DIR. Exits 3 (the Rust test reports a
skip) only when the browser itself cannot start; any other failure exits 1."""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from e2e_check import check

ROOT, ADMIN, CLIENT, SHOTS = sys.argv[1:5]
SECRET = "sk-ui-secret-in-the-body-123"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    sys.exit(f"FAIL selenium is not installed ({e}); run: pip install -r tests/requirements.txt")


def http(method, path, key=None, body=None):
    """One plain HTTP call; returns (status, parsed JSON or text)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(ROOT + path, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def chat(key, text):
    body = {"model": "gpt-fixture", "api_key": SECRET,
            "messages": [{"role": "user", "content": text}]}
    return http("POST", "/v1/chat/completions", key, body)[0]


def start_browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("LLM_RELAY_CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,860", "--no-proxy-server", "--disable-extensions"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = os.environ.get("LLM_RELAY_CHROMEDRIVER", "/usr/bin/chromedriver")
    if not os.path.exists(driver_path) or not os.path.exists(opts.binary_location):
        print(f"cannot start the browser: {opts.binary_location} or {driver_path} is missing; "
              "install Debian's chromium and chromium-driver (scripts/test-deps.sh)")
        sys.exit(3)
    try:
        return webdriver.Chrome(service=Service(driver_path), options=opts)
    except Exception as e:  # the browser itself cannot start here: a reported skip
        print(f"cannot start the browser: {e}")
        sys.exit(3)


# ---- a scripted workload before the browser opens ------------------------------------------
for text in ["one", "two", "one", "one", "three"]:
    check(f"workload call {text!r}", chat(CLIENT, text), 200)
status, stats = http("GET", "/admin/stats", ADMIN)
check("GET /admin/stats", status, 200)
team = stats["data"][0]
check("workload requests in /admin/stats", team["requests"], 5)

driver = start_browser()
wait = WebDriverWait(driver, 30)
shots = []


def loaded(page):
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == page)


def go(page):
    click(f'#nav a[data-page="{page}"]')
    loaded(page)


# The pages poll and redraw every few seconds, so elements are looked up afresh on each use
# (in the page, by selector) rather than held across a redraw.
def text_of(css):
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null", css)


def present(css):
    return driver.execute_script("return document.querySelector(arguments[0]) !== null", css)


def click(css):
    wait.until(lambda d: present(css))
    driver.execute_script("document.querySelector(arguments[0]).click()", css)


def shot(name):
    path = os.path.join(SHOTS, f"ui-{name}.png")
    driver.save_screenshot(path)
    shots.append(path)


def plain(n):
    return int(n.replace(",", ""))


try:
    # ---- sign in ------------------------------------------------------------------------
    driver.get(ROOT + "/ui")
    check("login form shown first", driver.find_element(By.ID, "login").is_displayed(), True)
    check("no key before signing in", driver.execute_script(
        "return sessionStorage.getItem('llm-relay-admin-key')"), None)
    shot("login")
    driver.find_element(By.ID, "admin-key").send_keys(ADMIN)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    loaded("overview")
    check("key kept in sessionStorage", driver.execute_script(
        "return sessionStorage.getItem('llm-relay-admin-key')"), ADMIN)
    check("no cookie", driver.execute_script("return document.cookie"), "")
    check("replica shown", "replica " in text_of("#replica"), True)

    # ---- overview numbers against /admin/stats -------------------------------------------
    check("overview requests = /admin/stats", plain(text_of('[data-stat="requests"]')),
          team["requests"])
    check("overview cache hits = /admin/stats", plain(text_of('[data-stat="cache_hits"]')),
          team["cache_hits"])
    check("overview tokens saved = /admin/stats", plain(text_of('[data-stat="saved_tokens"]')),
          team["saved_tokens"])
    check("overview charts drawn", len(driver.find_elements(By.CSS_SELECTOR, "svg.chart path")) >= 6,
          True)
    shot("overview")
    click("#window-day")
    wait.until(lambda d: "(day)" in (text_of(".stat:first-child") or ""))
    check("day window requests", plain(text_of('[data-stat="requests"]')), team["requests"])

    # ---- keys: numbers, create, use, patch, revoke -------------------------------------------
    go("keys")
    row = f'tr[data-key-id="{team["id"]}"]'
    check("keys page requests = /admin/stats",
          plain(text_of(row + ' [data-col="requests"]')), team["requests"])
    check("keys page hits = /admin/stats",
          plain(text_of(row + ' [data-col="cache_hits"]')), team["cache_hits"])
    check("keys page tokens = /admin/stats", plain(text_of(row + ' [data-col="tokens"]')),
          team["prompt_tokens"] + team["completion_tokens"])
    shot("keys")
    driver.find_element(By.ID, "new-name").send_keys("browser-key")
    driver.find_element(By.ID, "new-per-minute").send_keys("100")
    click("#create-key")
    wait.until(lambda d: present("#created-secret"))
    secret = text_of("#created-secret")
    keys = http("GET", "/admin/keys", ADMIN)[1]["data"]
    new_id = [k["id"] for k in keys if k["name"] == "browser-key"][0]
    check("created key has its rate limit", [k["rate_limit"] for k in keys
                                             if k["id"] == new_id][0], {"per_minute": 100})
    check("key created in the page works", chat(secret, "from the new key"), 200)
    click(f'button[data-edit="{new_id}"]')
    name = driver.find_element(By.ID, "edit-name")
    name.clear()
    name.send_keys("browser-key-renamed")
    click("#key-edit-form button[type=submit]")
    wait.until(lambda d: any(k["name"] == "browser-key-renamed"
                             for k in http("GET", "/admin/keys", ADMIN)[1]["data"]))
    check("key renamed from the page", True, True)
    revoke = f'button[data-revoke="{new_id}"]'
    click(revoke)
    wait.until(lambda d: "Confirm" in (text_of(revoke) or ""))
    click(revoke)
    wait.until(lambda d: not present(f'tr[data-key-id="{new_id}"]'))
    check("revoked key is refused", chat(secret, "after revoke"), 401)

    # ---- upstreams ---------------------------------------------------------------------------
    go("upstreams")
    check("an upstream listed", len(driver.find_elements(By.CSS_SELECTOR, "tr[data-upstream]")) >= 1,
          True)
    shot("upstreams")

    # ---- requests: the detail shows the body, the key redacted -------------------------------
    go("requests")
    items = http("GET", "/admin/ui/requests?limit=500", ADMIN)[1]["data"]
    first = [i for i in items if i["cache"] == "miss" and i["status"] == 200][-1]
    click(f'tr[data-request="{first["id"]}"]')
    wait.until(lambda d: present("#detail-request"))
    body = text_of("#detail-request")
    check("detail shows the request body", '"content": "one"' in body, True)
    check("detail redacts the key in the body", "[redacted]" in body and SECRET not in body, True)
    check("detail never shows the client key", CLIENT in driver.page_source, False)
    shot("requests")
    driver.find_element(By.ID, "request-filter").send_keys("hit")
    shown = "return [...document.querySelectorAll('#request-list tbody tr')].filter((t) => !t.hidden).length"
    hits = len([i for i in items if i["cache"] == "hit"])
    wait.until(lambda d: d.execute_script(shown) == hits)
    check("filter shows only the hits", driver.execute_script(shown), 2)

    # ---- cache: search and open an entry ------------------------------------------------------
    go("cache")
    driver.find_element(By.ID, "cache-q").send_keys("\"two\"")
    click("#cache-search button[type=submit]")
    wait.until(lambda d: d.execute_script(
        "return document.querySelectorAll('tr[data-entry]').length") == 1)
    click("tr[data-entry] td:nth-child(3)")
    wait.until(lambda d: present("#entry-request"))
    check("cache entry opened", '"two"' in text_of("#entry-request"), True)
    shot("cache")
    why = driver.find_element(By.ID, "why-body")
    why.send_keys(json.dumps({"model": "gpt-fixture", "api_key": SECRET,
                              "messages": [{"role": "user", "content": "twp"}]}))
    click("#cache-why button[type=submit]")
    wait.until(lambda d: "messages[0].content" in (text_of("#why-result") or ""))
    check("why names the differing field", True, True)

    # ---- no console error on any page --------------------------------------------------------
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check("browser console errors", errors, [])

    # ---- phone-sized and dark --------------------------------------------------------------------
    driver.set_window_size(390, 844)
    go("overview")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    check("no sideways scrolling on a phone-sized screen", overflow <= 1, True)
    shot("phone")
    driver.set_window_size(1200, 860)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    go("keys")
    bg = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    check("dark mode background", bg, "rgb(21, 22, 26)")
    shot("dark")

    # ---- signed out: the page shows the login and no data call works without the key --------
    click("#logout")
    check("signed out: login shown", driver.find_element(By.ID, "login").is_displayed(), True)
    check("signed out: key gone", driver.execute_script(
        "return sessionStorage.getItem('llm-relay-admin-key')"), None)
    routes = ["/admin/ui/overview", "/admin/ui/keys", "/admin/ui/upstreams", "/admin/ui/requests",
              f"/admin/ui/requests/{first['id']}", "/admin/ui/cache", "/admin/keys", "/admin/stats"]
    statuses = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all(arguments[0].map((p) => fetch(p, {credentials: 'include'}).then((r) => r.status)))
          .then(done, (e) => done(String(e)));""", routes)
    check("every data call without the key is refused", statuses, [401] * len(routes))
    driver.refresh()
    wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
    check("after reload still signed out", driver.find_element(By.ID, "nav").is_displayed(), False)
except BaseException:
    # what the page said and logged, for the failure report
    print("page status line:", text_of("#status"))
    print("browser log:", driver.get_log("browser"))
    shot("failure")
    raise
finally:
    driver.quit()

print("screenshots: " + ", ".join(shots))
print("all dashboard browser checks passed")
