"""Drives a member's HTTP+JSON gateway with OpenStack's etcd3gw client (Debian's
python3-etcd3gw) and prints what each call returned, for comparison between etcd and oxetcd.

Usage: python3 etcd3gw_session.py PORT
"""
import sys
import threading

from etcd3gw.client import Etcd3Client

# etcd3gw 2.0 defaults to /v3alpha/, which etcd 3.4 no longer serves.
c = Etcd3Client(host="127.0.0.1", port=int(sys.argv[1]), api_path="/v3/")


def show(what, value):
    print(f"{what}: {value!r}")


show("put", c.put("k1", "v1"))
show("get", c.get("k1"))
show("create existing", c.create("k1", "x"))
show("create new", c.create("k2", "y"))
show("get_prefix", sorted(v for v, _ in c.get_prefix("k")))
show("replace wrong", c.replace("k1", "nope", "z"))
show("replace right", c.replace("k1", "v1", "v1b"))
show("get after replace", c.get("k1"))
meta = c.get("k1", metadata=True)[0][1]
show("metadata", sorted((k, v) for k, v in meta.items() if k != "lease"))
show("delete", c.delete("k2"))
show("delete missing", c.delete("k2"))
lease = c.lease(ttl=30)
show("lease ttl", lease.ttl() > 0)
show("put under lease", c.put("leased", "v", lease=lease))
show("lease keys", [k.decode() if isinstance(k, bytes) else k for k in lease.keys()])
show("lease refresh", lease.refresh() > 0)
show("lease revoke", lease.revoke())
show("leased key gone", c.get("leased"))
lock = c.lock("mylock", ttl=30)
show("lock acquire", lock.acquire())
show("lock is_acquired", lock.is_acquired())
other = c.lock("mylock", ttl=30)
show("second lock acquire", other.acquire())
show("lock release", lock.release())
show("second lock acquire after release", other.acquire())
other.release()

# A watch sees a put made after it started.
events, cancel = c.watch("w")
got = []
t = threading.Thread(target=lambda: got.extend([next(iter(events))]))
t.start()
while not got:
    c.put("w", "1")
    t.join(timeout=0.2)
cancel()
ev = got[0]
show("watch event", (ev.get("type", "PUT"), ev["kv"]["key"], ev["kv"]["value"]))
show("members", len(c.members()))
show("status has version", "version" in c.status())
