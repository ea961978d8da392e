"""``facecast dashboard``: a small local web page showing every agent on a broker, live.

A server-side MQTT subscriber keeps the latest state per device and pushes changes to the page as
Server-Sent Events: no MQTT-over-WebSockets listener is needed on the broker, no build step, no
JavaScript dependency (the page is plain JS, shipped as package data).
"""

from agent.dashboard.server import DashboardServer
from agent.dashboard.state import DashboardState

__all__ = ["DashboardServer", "DashboardState"]
