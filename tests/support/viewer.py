"""A websocket client of a run's log, speaking the protocol the browser's viewer speaks."""

import asyncio
import base64
import http.cookiejar
import json
import re
import urllib.parse
import urllib.request

import websockets
from websockets.asyncio.client import connect


def session_cookie(stack) -> str:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = browser.open(f"{stack.url}/login/").read().decode()
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, "the sign-in page has no CSRF token"
    csrf = found.group(1)
    form = urllib.parse.urlencode(
        {"username": "alice", "password": stack.password, "csrfmiddlewaretoken": csrf}
    ).encode()
    browser.open(urllib.request.Request(f"{stack.url}/login/", data=form)).read()
    return next(c.value or "" for c in jar if c.name == "sessionid")


class Viewer:
    """A websocket client of one run, as the browser's viewer is."""

    def __init__(self, stack, cookie: str, run_id: int) -> None:
        self.url = f"ws://127.0.0.1:{stack.port}/ws/runs/{run_id}/logs/"
        self.headers = {"Cookie": f"sessionid={cookie}"}
        self.origin = stack.url
        self.connections = 0
        # Frames that did not start where the client's offset was: bytes sent twice, or a gap.
        self.misplaced = 0

    async def follow(self, offsets: dict, on_bytes) -> None:
        """Follow until the run has ended and every byte arrived, reconnecting as the page does."""
        offsets = dict(offsets)
        while True:
            try:
                if await self.follow_once(offsets, on_bytes):
                    return
            except (OSError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.25)

    async def follow_once(self, offsets: dict, on_bytes) -> bool:
        async with connect(
            self.url, additional_headers=self.headers, origin=self.origin, max_size=None
        ) as socket:
            self.connections += 1
            await socket.send(json.dumps({"type": "follow", "offsets": offsets}))
            synced = final = False
            async for frame in socket:
                message = json.loads(frame)
                if message["type"] == "log":
                    data = base64.b64decode(message["data"])
                    stream, skip = message["stream"], offsets[message["stream"]] - message["offset"]
                    self.misplaced += skip != 0
                    if skip < len(data):
                        offsets[stream] += len(data) - skip
                        on_bytes(stream, data[skip:])
                elif message["type"] == "synced":
                    synced = True
                elif message["type"] == "status":
                    final = message["final"]
                if synced and final:
                    return True
        return False
