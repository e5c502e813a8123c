#!/usr/bin/env python3
"""The soak's driver (tests/soak/soak.sh starts what it drives and runs it).

Load: threads making lookups (v1 single and bulk, v2 hashed), 3PID sessions (requestToken,
the token read from the sink's Maildir, submitToken), binds and unbinds, store-invites (their
mail awaited, then the invited address validated and bound: the onbind reaches the fake
homeserver) and password checks against LDAP, each request to one of the two instances
picked at random, sent to the other when the first cannot be reached.

Faults, one every SOAK_FAULT_EVERY seconds, in turn: SMTP sink stopped, slapd SIGSTOPped,
PostgreSQL restarted, instance b killed -9 (started again ~20 s later). Each answer is
counted under the fault active when it was asked (or ended), or "none".

At the end: errors by fault and by kind, the RSS of each instance every 30 s, and the
accounting (every session, bind and invite made is accounted for; duplicates bounded by
what was in flight at a kill). Exits 1 when a check fails. Python's standard library only.
"""
import base64
import collections
import email
import email.policy
import hashlib
import http.client
import json
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

ENV = os.environ
DIR = ENV["SOAK_DIR"]
MINUTES = float(ENV.get("SOAK_MINUTES", "30"))
FAULT_EVERY = float(ENV.get("SOAK_FAULT_EVERY", "240"))
FAULT_LENGTH = float(ENV.get("SOAK_FAULT_LENGTH", str(min(60.0, FAULT_EVERY / 2))))
KILL_DOWN = float(ENV.get("SOAK_KILL_DOWN", str(min(20.0, FAULT_EVERY / 3))))
# After a fault ends, answers are still counted under it for this long (a pool reconnecting).
GRACE = float(ENV.get("SOAK_GRACE", "15"))
THREADS = int(ENV.get("SOAK_THREADS", "6"))
# The share of binds unbound right after (1 keeps the number of binds held steady: memory
# that follows the data then stays flat too).
UNBIND_SHARE = float(ENV.get("SOAK_UNBIND_SHARE", "0.25"))
INSTANCES = {"a": ENV["SOAK_A"], "b": ENV["SOAK_B"]}
HS_PORT = int(ENV["SOAK_HS_PORT"])
HS_NAME = f"127.0.0.1:{HS_PORT}"
PG = ENV["SOAK_PG"]
CTL = os.path.join(DIR, "ctl.sh")
MAILDIR = os.path.join(DIR, "maildir", "new")
# A mail read is moved to cur/ (read, in Maildir's terms), so each scan lists only new ones.
READ = os.path.join(DIR, "maildir", "cur")
USERS = 500  # fixtures: user0000 … user0499, password userpw
V1 = "/_matrix/identity/api/v1"
V2 = "/_matrix/identity/v2"
CHECK = "/_matrix-internal/identity/v1/check_credentials"
KILLED = "b"

T0 = time.monotonic()
DURATION = MINUTES * 60
stop = threading.Event()
lock = threading.RLock()  # faults.at is called with it held


def now():
    return time.monotonic() - T0


def log(msg):
    sys.stderr.write(f"[{now():7.1f}s] {msg}\n")
    sys.stderr.flush()


# --- faults --------------------------------------------------------------------------------

class Faults:
    """Which fault is active (or was, within GRACE): what each answer is counted under."""

    def __init__(self):
        self.windows = []  # [name, start, end or None]
        self.kills = []  # what was in flight when an instance was killed

    def begin(self, name):
        with lock:
            self.windows.append([name, now(), None])

    def end(self):
        with lock:
            self.windows[-1][2] = now()

    def at(self, t):
        with lock:
            for name, start, end in reversed(self.windows):
                if start <= t and (end is None or t <= end + GRACE):
                    return name
        return "none"


faults = Faults()


def ctl(*args):
    r = subprocess.run(["bash", CTL, *args], capture_output=True, text=True)
    if r.returncode != 0:
        log(f"ctl {' '.join(args)} failed: {r.stderr.strip()}")
    return r.returncode == 0


def psql(query):
    r = subprocess.run(["psql", PG, "-Atc", query], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def fault_smtp():
    ctl("smtp-stop")
    stop.wait(FAULT_LENGTH)
    ctl("smtp-start")


def fault_slapd():
    ctl("slapd-stop")
    stop.wait(FAULT_LENGTH)
    ctl("slapd-cont")


def fault_pg():
    ctl("pg-restart")


def fault_kill():
    with lock:
        in_flight = dict(inflight[KILLED])
    # Queue items claimed (under a live lease) at the kill: the killed instance holds at
    # most these, each of which may be delivered again by the other once its lease ends.
    claimed = psql("SELECT kind, count(*) FROM delivery_queue WHERE claimed_until > "
                   "(extract(epoch from now()) * 1000)::bigint GROUP BY kind")
    ctl("mxisd-kill", KILLED)
    rss.restarted(KILLED, None)
    faults.kills.append({"t": round(now()), "in_flight": in_flight, "claimed": claimed or ""})
    log(f"killed {KILLED}: in flight {in_flight}, claimed queue items {claimed!r}")
    stop.wait(KILL_DOWN)
    ctl("mxisd-start", KILLED)
    rss.restarted(KILLED, now())


FAULTS = [("smtp-down", fault_smtp), ("slapd-frozen", fault_slapd),
          ("pg-restart", fault_pg), ("kill-9", fault_kill)]


def fault_loop():
    k = 0
    while not stop.wait(max(0.0, (k + 1) * FAULT_EVERY - now())):
        if now() + 30 > DURATION:
            return
        name, run = FAULTS[k % len(FAULTS)]
        log(f"fault {name}")
        faults.begin(name)
        run()
        faults.end()
        log(f"fault {name} over")
        k += 1


# --- RSS -----------------------------------------------------------------------------------

def pid_of(name):
    try:
        with open(os.path.join(DIR, f"mxisd-{name}.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError):
        return None


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return None


class Rss:
    def __init__(self):
        self.samples = {n: [] for n in INSTANCES}  # (t s, kB or None, started at s)
        self.started = {n: 0.0 for n in INSTANCES}  # None while killed

    def restarted(self, name, t):
        with lock:
            self.started[name] = t

    def sample(self):
        for name in INSTANCES:
            with lock:
                started = self.started[name]
            kb = rss_kb(pid_of(name)) if started is not None else None
            self.samples[name].append((round(now()), kb, None if started is None else round(started)))

    def loop(self):
        while True:
            self.sample()
            if stop.wait(30):
                self.sample()
                return


rss = Rss()


# --- HTTP ----------------------------------------------------------------------------------

stats = collections.defaultdict(lambda: collections.Counter())  # (fault, kind) -> status
inflight = {n: collections.Counter() for n in INSTANCES}
failovers = collections.Counter()
wrong = []  # answers that were 200 but wrong


class Unreachable(Exception):
    pass


def request(inst, method, path, body=None, token=None):
    host, port = INSTANCES[inst].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            return r.status, None
    except (OSError, http.client.HTTPException) as e:
        raise Unreachable(f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def call(kind, method, path, body=None, token=None, expect=(200,)):
    """One request to either instance (the other if the first cannot be reached), counted
    under (fault, kind). Returns (status, json); status 0 when neither answered."""
    first = random.choice(list(INSTANCES))
    order = [first] + [n for n in INSTANCES if n != first]
    start = now()
    status, answer, errors = 0, None, []
    for inst in order:
        with lock:
            inflight[inst][kind] += 1
        try:
            status, answer = request(inst, method, path, body, token)
            break
        except Unreachable as e:
            errors.append(f"{inst}: {e}")
            with lock:
                failovers[(faults.at(start), kind)] += 1
        finally:
            with lock:
                inflight[inst][kind] -= 1
    fault = faults.at(start)
    if fault == "none":
        fault = faults.at(now())
    with lock:
        stats[(fault, kind)][status] += 1
    if status not in expect:
        msg = f"{kind} {method} {path.split('?')[0]}: {status} {json.dumps(answer)[:200] if answer else errors}"
        with lock:
            error_samples[(fault, kind, status)] = msg
    return status, answer


error_samples = {}


# --- the Maildir ---------------------------------------------------------------------------

class Mails:
    """Every mail the sink stored, by recipient: ("session", sid, token) or ("invite", token)."""

    def __init__(self):
        self.count = 0
        self.by_address = collections.defaultdict(list)
        self.cond = threading.Condition(lock)

    @staticmethod
    def text(msg):
        parts = []
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                payload = part.get_payload(decode=True) or b""
                parts.append(payload.decode("utf-8", "replace"))
        return "\n".join(parts).replace("&amp;", "&")

    def parse(self, path):
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.compat32)
        rcpt = (msg.get("X-RcptTo") or "").lower()
        body = self.text(msg)
        m = re.search(r"submitToken\?[^\s\"'<>]*", body)
        if m:
            q = dict(kv.split("=", 1) for kv in m.group(0).split("?", 1)[1].split("&") if "=" in kv)
            return rcpt, ("session", q.get("sid"), q.get("token"))
        m = re.search(r"sign-ed25519(?:\?|%3F)token(?:=|%3D)([A-Za-z0-9]+)", body)
        if m:
            return rcpt, ("invite", m.group(1))
        return rcpt, ("other",)

    def scan(self):
        try:
            names = os.listdir(MAILDIR)
        except OSError:
            return
        for name in names:
            try:
                rcpt, what = self.parse(os.path.join(MAILDIR, name))
                os.rename(os.path.join(MAILDIR, name), os.path.join(READ, name))
            except OSError:
                continue  # gone meanwhile (another scan took it)
            with self.cond:
                self.count += 1
                for address in rcpt.split(", "):
                    self.by_address[address].append(what)
                self.cond.notify_all()

    def loop(self):
        while not stop.is_set():
            self.scan()
            time.sleep(0.2)
        self.scan()

    def of(self, address):
        with lock:
            return list(self.by_address.get(address.lower(), []))

    def wait(self, address, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in self.by_address.get(address.lower(), []) if pred(m)]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self.cond.wait(min(left, 1.0))


mails = Mails()


# --- the load ------------------------------------------------------------------------------

counter = iter(range(1, 10**9))
ledger = {"sessions": [], "binds": [], "invites": []}
state = {"token": None, "pepper": None}
pending_invites = collections.deque()  # invites whose address is yet to be bound


def fresh(prefix):
    with lock:
        n = next(counter)
    return n, f"{prefix}{n}-{random.getrandbits(32):08x}"


def lookup_hash(address, medium, pepper):
    digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def expected(address):
    """The mxid an LDAP fixture address maps to, or None."""
    m = re.fullmatch(r"(user\d{4})@example\.org", address)
    return f"@{m.group(1)}:example.org" if m else None


def check_answer(kind, address, got):
    want = expected(address)
    if want is not None and got != want:
        with lock:
            wrong.append(f"{kind} {address}: {got!r}, not {want!r}")


def some_user():
    return f"user{random.randrange(USERS):04d}"


def load_lookup():
    which = random.random()
    if which < 0.4:
        address = f"{some_user()}@example.org"
        st, a = call("lookup-v1", "GET", f"{V1}/lookup?medium=email&address={address}")
        if st == 200 and a is not None:
            check_answer("lookup-v1", address, a.get("mxid"))
    elif which < 0.7:
        addresses = [f"{some_user()}@example.org" for _ in range(10)]
        st, a = call("lookup-bulk", "POST", f"{V1}/bulk_lookup",
                     {"threepids": [["email", x] for x in addresses]})
        if st == 200 and a is not None:
            found = {t[1]: t[2] for t in a.get("threepids", [])}
            for x in addresses:
                check_answer("lookup-bulk", x, found.get(x))
    else:
        address = f"{some_user()}@example.org"
        h = lookup_hash(address, "email", state["pepper"])
        st, a = call("lookup-v2", "POST", f"{V2}/lookup",
                     {"algorithm": "sha256", "pepper": state["pepper"], "addresses": [h]},
                     token=state["token"])
        if st == 200 and a is not None:
            check_answer("lookup-v2", address, a.get("mappings", {}).get(h))


def load_login():
    user = some_user()
    st, a = call("login", "POST", CHECK, {"user": {"id": f"@{user}:example.org", "password": "userpw"}})
    if st == 200 and not (a or {}).get("auth", {}).get("success"):
        with lock:
            stats[(faults.at(now()), "login")]["200-refused"] += 1
            stats[(faults.at(now()), "login")][200] -= 1


def session(address):
    """requestToken, the mail, submitToken: (sid, secret) of a validated session, or None.
    Every requestToken is put in the ledger with what it was answered."""
    secret = f"soak{random.getrandbits(64):016x}"
    entry = {"address": address, "secret": secret, "t": round(now()),
             "fault": faults.at(now()), "status": None, "sid": None}
    st, a = call("requestToken", "POST", f"{V1}/validate/email/requestToken",
                 {"client_secret": secret, "email": address, "send_attempt": 1})
    entry["status"] = st
    with lock:
        ledger["sessions"].append(entry)
    if st != 200 or not a or "sid" not in a:
        return None
    sid = entry["sid"] = a["sid"]
    found = mails.wait(address, lambda m: m[0] == "session" and m[1] == sid, 20)
    if not found:
        return None  # counted at the end, when the Maildir has had its time
    st, _ = call("submitToken", "POST", f"{V1}/validate/email/submitToken",
                 {"sid": sid, "client_secret": secret, "token": found[0][2]})
    return (sid, secret) if st == 200 else None


def bind(address, mxid, validated, why):
    sid, secret = validated
    entry = {"address": address, "mxid": mxid, "why": why, "t": round(now()),
             "status": None, "unbound": False}
    st, _ = call("bind", "POST", f"{V1}/3pid/bind", {"sid": sid, "client_secret": secret, "mxid": mxid})
    entry["status"] = st
    with lock:
        ledger["binds"].append(entry)
    return entry


def load_bind():
    _, address = fresh("s")
    address = f"{address}@example.org"
    validated = session(address)
    if validated is None:
        return
    n, _ = fresh("b")
    entry = bind(address, f"@b{n}:example.org", validated, "bind")
    if entry["status"] == 200 and random.random() < UNBIND_SHARE:
        sid, secret = validated
        st, _ = call("unbind", "POST", f"{V1}/3pid/unbind",
                     {"mxid": entry["mxid"], "threepid": {"medium": "email", "address": address},
                      "sid": sid, "client_secret": secret})
        if st == 200:
            entry["unbound"] = True


def load_invite():
    n, address = fresh("i")
    address = f"{address}@example.net"
    entry = {"address": address, "t": round(now()), "fault": faults.at(now()),
             "status": None, "token": None, "bound": None}
    st, a = call("store-invite", "POST", f"{V1}/store-invite",
                 {"medium": "email", "address": address, "room_id": f"!soak{n % 50}:example.org",
                  "sender": f"@s{n % 200}:example.org", "room_name": "Soak"})
    entry["status"] = st
    if st == 200 and a:
        entry["token"] = a.get("token")
    with lock:
        ledger["invites"].append(entry)
        if st == 200:
            pending_invites.append(entry)


def bind_invitee():
    """The oldest invite whose mail arrived: its address validated and bound to a user of
    the fake homeserver, which mxisd then calls (onbind). One without its mail yet waits."""
    with lock:
        ready = [e for e in pending_invites
                 if any(m[0] == "invite" for m in mails.by_address.get(e["address"], []))]
        if not ready:
            return False
        entry = ready[0]
        pending_invites.remove(entry)
    validated = session(entry["address"])
    if validated is None:
        with lock:
            pending_invites.append(entry)  # again later
        return True
    n, _ = fresh("inv")
    b = bind(entry["address"], f"@inv{n}:{HS_NAME}", validated, "invite")
    if b["status"] == 200:
        entry["bound"] = b["mxid"]
        entry["bound_t"] = round(now())
    else:
        with lock:
            pending_invites.append(entry)
    return True


LOAD = [(load_lookup, 8), (load_login, 3), (load_bind, 3), (load_invite, 1)]


def worker(i):
    rng = random.Random(i)
    flows = [f for f, w in LOAD for _ in range(w)]
    while now() < DURATION and not stop.is_set():
        try:
            if not (i == 0 and bind_invitee()):
                rng.choice(flows)()
        except Exception as e:  # the driver's own bug: counted, never silent
            with lock:
                stats[(faults.at(now()), "driver-exception")][type(e).__name__] += 1
            log(f"driver exception: {e!r}")
        time.sleep(rng.uniform(0, 0.15))


# --- setup and the end ---------------------------------------------------------------------

def setup():
    body = {"access_token": f"user:@soak:{HS_NAME}", "token_type": "Bearer",
            "matrix_server_name": HS_NAME, "expires_in": 3600}
    st, a = request("a", "POST", f"{V2}/account/register", body)
    if st != 200:
        sys.exit(f"soak: account/register: {st} {a}")
    state["token"] = a["token"]
    st, a = request("a", "GET", f"{V2}/hash_details", token=state["token"])
    if st != 200:
        sys.exit(f"soak: hash_details: {st} {a}")
    state["pepper"] = a["lookup_pepper"]
    # The hash index is built at start from LDAP: v2 lookups are counted once both have it.
    probe = "user0001@example.org"
    h = lookup_hash(probe, "email", state["pepper"])
    deadline = time.monotonic() + 60
    for inst in INSTANCES:
        while True:
            st, a = request(inst, "POST", f"{V2}/lookup",
                            {"algorithm": "sha256", "pepper": state["pepper"], "addresses": [h]},
                            token=state["token"])
            if st == 200 and a.get("mappings", {}).get(h):
                break
            if time.monotonic() > deadline:
                sys.exit(f"soak: {inst}'s hash index never held {probe}: {st} {a}")
            time.sleep(0.5)


def onbinds():
    ctx = ssl.create_default_context(cafile=ENV["SOAK_CA"])
    conn = http.client.HTTPSConnection("127.0.0.1", HS_PORT, context=ctx, timeout=30)
    conn.request("GET", "/recorded/onbind")
    return json.loads(conn.getresponse().read())


def drain():
    """Waits (at most 5 minutes) until the delivery queue is empty and pending invitees are
    bound: retries are due within invite.retry.max."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        mails.scan()
        for _ in range(len(pending_invites)):
            if not bind_invitee():
                break
        depth = psql("SELECT count(*) FROM delivery_queue")
        with lock:
            waiting = len(pending_invites)
        if depth == "0" and waiting == 0:
            return True
        time.sleep(2)
    log(f"not drained: queue {psql('SELECT kind, count(*) FROM delivery_queue GROUP BY kind')!r}, "
        f"{len(pending_invites)} invites without their mail")
    return False


def account(report):
    checks = []
    mails.scan()
    # Sessions: a 200 has its mail; a 5xx kept nothing (no mail for it).
    s = collections.Counter()
    for e in ledger["sessions"]:
        got = [m for m in mails.of(e["address"]) if m[0] == "session" and (e["sid"] is None or m[1] == e["sid"])]
        if e["status"] == 200:
            s["answered 200"] += 1
            if not got:
                s["LOST: 200 without a mail"] += 1
            elif len(got) > 1:
                s["duplicate mails"] += len(got) - 1
        elif e["status"] >= 500 or e["status"] == 0:
            s[f"answered {e['status']}"] += 1
            # The address's only session is this one for addresses of plain binds.
            if e["address"].startswith("s") and got:
                s["5xx but a mail was sent"] += 1
        else:
            s[f"answered {e['status']}"] += 1
    report["sessions"] = dict(s)
    checks.append(("every session answered 200 has its mail", s["LOST: 200 without a mail"] == 0))

    # Binds: every 200 not unbound after is answered by a lookup, on both instances.
    live = {}
    for e in ledger["binds"]:
        if e["status"] == 200:
            if e["unbound"]:
                live.pop(e["address"], None)
            else:
                live[e["address"]] = e["mxid"]
    b = collections.Counter()
    for e in ledger["binds"]:
        b[f"{e['why']} answered {e['status']}"] += 1
        b["unbound after"] += e["unbound"]
    addresses = sorted(live)
    for inst in INSTANCES:
        missing = 0
        for i in range(0, len(addresses), 200):
            chunk = addresses[i:i + 200]
            st, a = request(inst, "POST", f"{V1}/bulk_lookup", {"threepids": [["email", x] for x in chunk]})
            found = {t[1]: t[2] for t in (a or {}).get("threepids", [])} if st == 200 else {}
            missing += sum(1 for x in chunk if found.get(x) != live[x])
        b[f"LOST: not found by {inst}"] = missing
    unbound = [e["address"] for e in ledger["binds"] if e["unbound"] and e["address"] not in live]
    for inst in INSTANCES:
        still = 0
        for i in range(0, len(unbound), 200):
            chunk = unbound[i:i + 200]
            st, a = request(inst, "POST", f"{V1}/bulk_lookup", {"threepids": [["email", x] for x in chunk]})
            still += len((a or {}).get("threepids", [])) if st == 200 else 0
        b[f"unbound yet found by {inst}"] = still
    report["binds"] = dict(b)
    checks.append(("every bind answered 200 is seen by lookups on both instances",
                   all(b[f"LOST: not found by {i}"] == 0 for i in INSTANCES)))
    checks.append(("every unbind answered 200 is gone from both instances",
                   all(b[f"unbound yet found by {i}"] == 0 for i in INSTANCES)))

    # Invites: a 200 has its mail; once bound, its onbind reached the homeserver.
    recorded = collections.Counter(o["body"]["address"] for o in onbinds())
    v = collections.Counter()
    for e in ledger["invites"]:
        v[f"answered {e['status']}"] += 1
        if e["status"] != 200:
            continue
        got = [m for m in mails.of(e["address"]) if m[0] == "invite" and m[1] == e["token"]]
        if not got:
            v["LOST: no invite mail"] += 1
        v["duplicate invite mails"] += max(0, len(got) - 1)
        if e["bound"]:
            v["bound"] += 1
            n = recorded.get(e["address"], 0)
            if n == 0:
                v["LOST: bound, no onbind"] += 1
            v["duplicate onbinds"] += max(0, n - 1)
    report["invites"] = dict(v)
    checks.append(("every invite answered 200 has its mail", v["LOST: no invite mail"] == 0))
    checks.append(("every bound invite's onbind reached the homeserver", v["LOST: bound, no onbind"] == 0))

    # Duplicates: at most what was in flight at the kills (requests, claimed queue items).
    bound = 0
    for k in faults.kills:
        bound += sum(k["in_flight"].values())
        for line in (k["claimed"] or "").splitlines():
            bound += int(line.split("|")[1])
    dups = s["duplicate mails"] + v["duplicate invite mails"] + v["duplicate onbinds"]
    report["duplicates"] = {"seen": dups, "bound (in flight at the kills)": bound, "kills": faults.kills}
    checks.append((f"duplicates ({dups}) within what was in flight at the kills ({bound})", dups <= bound))
    return checks


def rss_check(report):
    checks = []
    ref_at = min(300.0, DURATION / 3)
    out = {}
    for name, samples in rss.samples.items():
        # The reference: the first sample at least ref_at after the instance's last start.
        last_start = max((s for t, kb, s in samples if s is not None), default=0)
        after = [(t, kb) for t, kb, s in samples if s == last_start and kb]
        ref = next((kb for t, kb in after if t - last_start >= ref_at), None)
        end = after[-1][1] if after else None
        out[name] = {"samples (t s, kB, started at s)": samples, "reference kB": ref, "end kB": end}
        ok = ref is not None and end is not None and end <= ref * 1.10
        if ref is None and last_start + ref_at > now():
            checks.append((f"RSS of {name}: not measured, the run ended within {ref_at:.0f} s of its start", True))
            continue
        checks.append((f"RSS of {name}: end {end} kB <= 110% of {ref} kB ({ref_at:.0f} s after its start at {last_start} s)", ok))
    report["rss"] = out
    return checks


def log_summary():
    """Each instance's ERROR lines (and panics), by message with its numbers and ids masked."""
    out = {}
    for name in INSTANCES:
        c = collections.Counter()
        try:
            with open(os.path.join(DIR, f"mxisd-{name}.log"), errors="replace") as f:
                for line in f:
                    if " ERROR " in line or "panicked" in line:
                        msg = line.split(" ", 2)[-1].strip()
                        c[re.sub(r"[0-9A-Za-z]{16,}|\d+", "#", msg)[:160]] += 1
        except OSError:
            pass
        out[name] = dict(c.most_common(15))
    return out


def main():
    threading.Thread(target=mails.loop, daemon=True).start()
    setup()
    log(f"load for {MINUTES} min, a fault every {FAULT_EVERY:.0f} s "
        f"({FAULT_LENGTH:.0f} s; a kill lasts {KILL_DOWN:.0f} s)")
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    sampler = threading.Thread(target=rss.loop)
    sampler.start()
    fl = threading.Thread(target=fault_loop)
    fl.start()
    for t in threads:
        t.join()
    log("load over; draining the delivery queue")
    drained = drain()
    stop.set()
    fl.join()
    sampler.join()

    report = {"minutes": MINUTES, "fault_every_s": FAULT_EVERY, "threads": THREADS,
              "binary": ENV.get("SOAK_BIN"), "faults": faults.windows}
    checks = [("the delivery queue drained", drained)]
    checks += account(report)
    checks += rss_check(report)
    by_fault = collections.defaultdict(collections.Counter)
    for (fault, kind), c in stats.items():
        by_fault[fault][kind] = dict(c)
    report["answers by fault and kind"] = by_fault
    report["failovers (fault, kind)"] = {f"{f} {k}": n for (f, k), n in failovers.items()}
    report["error samples"] = {f"{f} {k} {s}": m for (f, k, s), m in error_samples.items()}
    report["mails read"] = mails.count
    report["mxisd ERROR log lines"] = log_summary()
    report["wrong answers"] = wrong[:20] + ([f"… {len(wrong)} in all"] if len(wrong) > 20 else [])
    errors_none = sum(n for (fault, kind), c in stats.items() if fault == "none"
                      for st, n in c.items() if st not in (200,))
    checks.append((f"no errors outside fault windows ({errors_none})", errors_none == 0))
    checks.append((f"no wrong answers ({len(wrong)})", not wrong))
    report["checks"] = [(what, "ok" if ok else "FAILED") for what, ok in checks]
    text = render(report)
    with open(os.path.join(DIR, "report.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(DIR, "report.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(text)
    sys.exit(0 if all(ok for _, ok in checks) else 1)


def render(report):
    lines = [f"soak: {report['minutes']} min, a fault every {report['fault_every_s']:.0f} s, "
             f"{report['threads']} threads, {report['binary']}",
             f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {os.uname().nodename}, "
             f"{os.cpu_count()} CPUs", "", "faults (start s, end s):"]
    for name, start, end in report["faults"]:
        lines.append(f"  {name:13} {start:7.0f} {end if end is None else round(end):>7}")
    lines += ["", "answers by fault window and kind (status: count; 0 = no instance answered):"]
    for fault in sorted(report["answers by fault and kind"]):
        kinds = report["answers by fault and kind"][fault]
        total = sum(n for c in kinds.values() for n in c.values())
        errs = sum(n for c in kinds.values() for st, n in c.items() if st != 200)
        lines.append(f"  {fault}: {total} requests, {errs} not 200")
        for kind in sorted(kinds):
            c = {str(k): v for k, v in kinds[kind].items() if v}
            lines.append(f"    {kind:14} {c}")
    if report["failovers (fault, kind)"]:
        lines.append(f"failovers (sent to the other instance): {report['failovers (fault, kind)']}")
    if report["error samples"]:
        lines.append("an example of each error:")
        lines += [f"  {k}: {v}" for k, v in sorted(report["error samples"].items())]
    lines += ["", "RSS (kB):"]
    for name, r in report["rss"].items():
        series = " ".join(f"{t}s:{kb}" for t, kb, s in r["samples (t s, kB, started at s)"])
        lines.append(f"  {name}: reference {r['reference kB']}, end {r['end kB']}")
        lines.append(f"     {series}")
    lines += ["", f"sessions: {report['sessions']}", f"binds: {report['binds']}",
              f"invites: {report['invites']}",
              f"duplicates: {report['duplicates']['seen']} (bound: {report['duplicates']['bound (in flight at the kills)']}); "
              f"kills: {report['duplicates']['kills']}"]
    lines.append(f"mails in the sink: {report['mails read']}")
    for name, c in report["mxisd ERROR log lines"].items():
        lines.append(f"mxisd {name} ERROR log lines: {sum(c.values())}")
        lines += [f"  {n:5} {msg}" for msg, n in c.items()]
    if report["wrong answers"]:
        lines.append(f"wrong answers: {report['wrong answers']}")
    lines += ["", "checks:"] + [f"  {ok:6} {what}" for what, ok in report["checks"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
