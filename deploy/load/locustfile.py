"""Locust load for the fleet: the same traffic as `fleet load` (see docs/load.md).

    BASE_URL=http://127.0.0.1:8080 locust -f deploy/load/locustfile.py             # web UI
    BASE_URL=http://127.0.0.1:8080 locust -f deploy/load/locustfile.py --headless -u 4 -r 4 -t 30s

Locust is a closed model: each user sends its next request when the last one is answered
(plus WAIT seconds). For an approximately open model, set RATE: each user then paces itself
to RATE / users requests per second (`constant_throughput`), as long as answers come back in time
-- with enough users, e.g. `-u 50` for RATE=40 at sub-second latencies.

Environment (all optional): BASE_URL (http://127.0.0.1:8080), MIX
(checkout=70,products=20,order=10), DECLINE_RATE (0.05), SEED, RATE (total req/s, open-ish),
USERS_FOR_RATE (how many users RATE is split over; defaults to Locust's -u), WAIT (closed model
think time, s), SLOW_MS (1000: print the trace id of slower requests), TEMPO_URL
(http://127.0.0.1:3200, for the hints).

Every gateway answer carries `x-trace-id`; failures carry it in their message, and slow requests
are printed with it, so `fleet trace <id>` shows what happened.
"""

import os
import random
import uuid

from locust import HttpUser, between, constant, constant_throughput, events

BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:8080").rstrip("/")
TEMPO_URL = os.environ.get("TEMPO_URL", "http://127.0.0.1:3200").rstrip("/")
DECLINE_RATE = float(os.environ.get("DECLINE_RATE", "0.05"))
SLOW_MS = float(os.environ.get("SLOW_MS", "1000"))
RATE = float(os.environ["RATE"]) if os.environ.get("RATE") else None
WAIT = float(os.environ.get("WAIT", "0"))

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000009995"
KNOWN_SKUS = [
    "COFFEE-250G", "GRINDER-HAND", "KETTLE-GOOSE", "MUG-CERAMIC",
    "FILTER-V60", "DRIPPER-V60", "SCALE-01", "TEA-SENCHA",
]
FIRST = ["ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "dennis",
         "frances", "edsger", "radia", "tim", "hedy", "john", "katherine", "leslie"]
LAST = ["lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "liskov",
        "ritchie", "allen", "dijkstra", "perlman", "lamport"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]


def parse_mix(spec):
    """`checkout=70,products=20,order=10` -> {"checkout": 70, ...}; unknown names are an error."""
    mix = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = (s.strip() for s in part.partition("="))
        if name not in ("checkout", "products", "order") or not weight.isdigit():
            raise ValueError(f"bad MIX entry {part!r}: use checkout|products|order=WEIGHT")
        if name in mix:
            raise ValueError(f"{name} appears twice in MIX")
        mix[name] = int(weight)
    if sum(mix.values()) == 0:
        raise ValueError("MIX needs at least one weight above 0")
    return mix


MIX = parse_mix(os.environ.get("MIX", "checkout=70,products=20,order=10"))


def random_email(rng):
    first, last, domain = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS)
    style = rng.randint(0, 2)
    if style == 0:
        return f"{first}.{last}@{domain}"
    if style == 1:
        return f"{first}{rng.randint(1, 999)}@{domain}"
    return f"{first[0]}{last}+shop@{domain}"


def checkout_body(rng, skus, declined):
    """1-4 distinct skus, quantities 1-3, a random customer, the good card or the declined one."""
    lines = rng.sample(skus, min(rng.randint(1, 4), len(skus)))
    return {
        "customer_email": random_email(rng),
        "items": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in lines],
        "card_number": CARD_DECLINED if declined else CARD_OK,
    }


SKUS = list(KNOWN_SKUS)
_user_count = 0


@events.test_start.add_listener
def read_catalogue(environment, **_kwargs):
    """Read the real skus once (GET /products), else keep the known list."""
    global SKUS
    import json
    import urllib.request

    host = (environment.host or BASE_URL).rstrip("/")
    try:
        with urllib.request.urlopen(f"{host}/products", timeout=10) as answer:
            skus = [p["sku"] for p in json.load(answer).get("products", []) if p.get("sku")]
        if skus:
            SKUS = skus
    except Exception as error:  # noqa: BLE001 - any failure falls back to the known skus
        print(f"cannot read {host}/products ({error}); using the known skus")


def _wait_time():
    if RATE:
        users = int(os.environ.get("USERS_FOR_RATE", "0")) or None
        if users:
            return constant_throughput(RATE / users)

        def paced(user):
            count = max(1, user.environment.runner.user_count if user.environment.runner else 1)
            return constant_throughput(RATE / count)(user)

        return paced
    return constant(WAIT) if WAIT else between(0, 0)


def checkout(user):
    declined = user.rng.random() < DECLINE_RATE
    res = user.send(
        "POST", "/checkout", "POST /checkout", 402 if declined else 201,
        json=checkout_body(user.rng, SKUS, declined),
    )
    try:
        body = res.json()
        order_id = body.get("order_id") or body.get("error", {}).get("details", {}).get("order_id")
    except Exception:  # noqa: BLE001 - not JSON: nothing to remember
        order_id = None
    if order_id:
        user.orders.append(order_id)
        del user.orders[:-1000]


def products(user):
    user.send("GET", "/products", "GET /products", 200)


def order(user):
    if user.orders:
        user.send("GET", f"/orders/{user.rng.choice(user.orders)}", "GET /orders/{id}", 200)
    else:
        # No order yet: a random id, and a 404 is the right answer.
        random_id = uuid.UUID(int=user.rng.getrandbits(128), version=4)
        user.send("GET", f"/orders/{random_id}", "GET /orders/{id}", 404)


# Locust reads the weights when the class is made: {task: weight}, zero weights left out.
TASKS = {
    fn: MIX.get(name, 0)
    for name, fn in (("checkout", checkout), ("products", products), ("order", order))
    if MIX.get(name, 0) > 0
}


class Shopper(HttpUser):
    host = BASE_URL
    wait_time = _wait_time()
    tasks = TASKS

    def on_start(self):
        global _user_count
        _user_count += 1
        seed = os.environ.get("SEED")
        self.rng = random.Random(f"{seed}-{_user_count}") if seed else random.Random()
        self.orders = []

    def send(self, method, path, name, expected, **kwargs):
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as res:
            trace_id = res.headers.get("x-trace-id", "(none)")
            if res.status_code != expected:
                res.failure(
                    f"{res.status_code} (expected {expected}) trace {trace_id} "
                    f"-> {TEMPO_URL}/api/traces/{trace_id}"
                )
            else:
                res.success()
                if res.elapsed.total_seconds() * 1000 > SLOW_MS:
                    print(f"slow {name} {res.elapsed.total_seconds() * 1000:.1f} ms trace {trace_id}")
            return res
