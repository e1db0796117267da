"""A WAN in software where the kernel has no netem: delay and lose packets of an NFQUEUE.

Run inside a network namespace whose egress is sent to queue QUEUE (`iptables -A OUTPUT -o DEV
-j NFQUEUE --queue-num QUEUE`): every packet is held DELAY_MS milliseconds, then let go, in
order, except LOSS_PERCENT of them, dropped at random: what `tc qdisc add dev DEV root netem
delay DELAY_MS loss LOSS_PERCENT%` does, on kernels built without sch_netem. The kernel keeps
the packets; this process only says when each may go (netlink verdicts by packet id), so TCP
on both ends sees real delay and real loss.

Prints `wan queue N ready` once bound. Speaks nfnetlink_queue itself (no libnetfilter_queue).

    python wan.py QUEUE DELAY_MS LOSS_PERCENT
"""

from __future__ import annotations

import collections
import random
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NETLINK_NO_ENOBUFS = 5
SOL_NETLINK = 270
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_DROP = 0
NF_ACCEPT = 1
ATTR_TYPE_MASK = 0x3FFF
# Packets the kernel may hold for us at once: 50 ms of a fast loopback transfer.
QUEUE_MAXLEN = 20000
RECV_BYTES = 1 << 20
SOCKET_BUFFER_BYTES = 8 << 20
NLMSG_HEADER = struct.Struct("=IHHII")
NFGEN_HEADER = struct.Struct("=BBH")


def attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def message(kind: int, queue: int, attributes: bytes, flags: int = NLM_F_REQUEST) -> bytes:
    body = NFGEN_HEADER.pack(socket.AF_UNSPEC, 0, socket.htons(queue)) + attributes
    msg_type = (NFNL_SUBSYS_QUEUE << 8) | kind
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), msg_type, flags, 0, 0) + body


def configure(sock: socket.socket, queue: int) -> None:
    """Bind the queue, ask for packet metadata only (the id), and a long queue; each acked."""
    for attributes in (
        attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)),
        attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
        attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)),
    ):
        sock.send(message(NFQNL_MSG_CONFIG, queue, attributes, NLM_F_REQUEST | NLM_F_ACK))
        reply = sock.recv(RECV_BYTES)
        _, msg_type, _, _, _ = NLMSG_HEADER.unpack_from(reply)
        if msg_type == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", reply, NLMSG_HEADER.size)
            if error:
                sys.exit(f"wan: configuring queue {queue} failed: errno {-error}")


def packet_ids(data: bytes) -> list[int]:
    """The ids of the queued packets in one netlink read."""
    ids = []
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, msg_type, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            break
        if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            at = offset + NLMSG_HEADER.size + NFGEN_HEADER.size
            while at + 4 <= offset + length:
                attr_len, kind = struct.unpack_from("=HH", data, at)
                if attr_len < 4:
                    break
                if kind & ATTR_TYPE_MASK == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, at + 4)[0])
                at += attr_len + (-attr_len % 4)
        offset += length + (-length % 4)
    return ids


def verdict(queue: int, packet_id: int, decision: int) -> bytes:
    return message(
        NFQNL_MSG_VERDICT,
        queue,
        attribute(NFQA_VERDICT_HDR, struct.pack("!II", decision, packet_id)),
    )


def main(queue: int, delay_ms: float, loss_percent: float) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    sock.bind((0, 0))
    configure(sock, queue)
    print(f"wan queue {queue} ready", flush=True)
    delay = delay_ms / 1000
    held: collections.deque[tuple[float, int]] = collections.deque()
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            sock.send(verdict(queue, held.popleft()[1], NF_ACCEPT))
        timeout = max(0.0, held[0][0] - now) if held else None
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            continue
        arrived = time.monotonic()
        for packet_id in packet_ids(sock.recv(RECV_BYTES)):
            if random.random() * 100 < loss_percent:
                sock.send(verdict(queue, packet_id, NF_DROP))
            else:
                held.append((arrived + delay, packet_id))


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
