"""Carrying one visitor's request or WebSocket over a pool socket: one exchange skeleton
(exchange.py), HTTP, WebSocket, and the flow control both directions need."""
