"""QoS of the node's services and of their clients: :data:`SERVICE_QOS`.

Why not rclpy's default service QoS (reliable, volatile, keep last 10): with Fast DDS (the
default middleware) a service's replies go out on one reply topic that every client of the
service subscribes to; each client's reply reader receives every reply, its own and all the
others', and the RMW discards the others' only when the client *takes* them (rmw_fastrtps
filters by the request's writer GUID in rmw_take_response). The reader keeps the last ``depth``
samples: when a client does not take for as long as the service needs to answer ``depth`` other
requests, its own reply is overwritten in its reader, the middleware drops it silently and the
client waits for its timeout. Nothing at the node can see or prevent it; nothing is wrong with
the node (it answered; no warning in its log).

Measured with bench/concurrency_stress.py on the 2-core development VM, 8 client processes × 100
ComputeFK requests (B = 100, all links), some of them sleeping between sending a request and
reading its reply (a client descheduled on a busy machine):

=========================================  ==========================  =========================
clients                                    default QoS (keep last 10)  SERVICE_QOS (keep last 100)
=========================================  ==========================  =========================
8, none stalls                             0 lost of 800               —
1 alone, stalls 300 ms                     0 lost of 5                 —
8, 4 stall 100 ms                          7 lost of 800               0 lost of 800
8, 1 stalls 300 ms                         1 lost of 800 (3 of 3 runs) 0 and 1 lost (2 runs)
=========================================  ==========================  =========================

Only stalled clients lost replies and only while the others were being served (the service
answered about 480 replies/s: a 100 ms stall lets about 48 other replies in, more than 10, fewer
than 100; 300 ms lets in about 140, more than 100). The issue's rare loss (1 in 9,600 requests,
8 clients) is the same thing with a natural stall: at that rate, depth 10 is 20 ms of a client not
reading. The remedy is a deeper history on the client's reply reader; the node uses the same
profile (its request reader then keeps up to ``depth`` requests from clients that send many
asynchronously, and its reply writer keeps more replies for retransmission to a reader that
missed one).

A second, rarer loss remains and is not the node's either: in one full-suite run on a clean
clone (6 clients × 150 requests, the whole machine busy), a client that did NOT stall lost one
reply of 900, and an earlier experiment saw the same with the default QoS. The likely cause is
the reply *writer's* history: it keeps the last ``depth`` replies until every matched reader
acknowledges them, so a client process descheduled for longer than the node takes to answer
``depth`` others (0.9 s at 116 replies/s) misses the reply it was sent (the writer drops it and
sends a GAP). A deeper writer history would narrow it but costs memory per service (``depth``
× reply size while a reader lags; 5.6 MB per 100 replies of B = 100) and KEEP_ALL lets one
stuck reader block everyone's replies; a client that matters should use a timeout and resend
(the computing services are idempotent; an UpdateScene ADD or MOVE resent gives the same scene,
a REMOVE resent fails naming the id).

Depth 100 tolerates a stall of ``100 / reply rate`` (0.2 s at 480 replies/s). Not KEEP_ALL: a
client that is idle between calls keeps every other client's reply in its reader until it next
spins, so its memory is bounded only by the depth (about ``depth`` × reply size: 5.6 MB for
B = 100 replies); with KEEP_ALL it would grow without bound, and a reader at its resource limit
stops acknowledging and blocks the node's reply writer for everyone. Clients that make many
small concurrent calls also pay CPU for every other client's replies; batch instead.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

#: Reliable, volatile, keep last 100: for the node's create_service calls and every client's
#: create_client (both ends: the reply reader that overflows is the client's).
SERVICE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
