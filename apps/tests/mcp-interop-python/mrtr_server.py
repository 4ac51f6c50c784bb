"""The official MCP Python SDK's own 2026-07-28 server, with one tool that asks its caller's model
by a multi round-trip request: ``greet`` answers the first call with an ``InputRequiredResult``
holding a ``sampling/createMessage``, and the retry with what the model said.

Run by ``apps/tests/sampling_interop_python.rs``, which points ``sse-apps sampling-client call``
at it: ``python mrtr_server.py`` prints ``listening PORT`` once it accepts connections.
"""

import asyncio
import socket

import uvicorn
from mcp import types
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("python-mrtr-server")


@server.tool()
async def greet(name: str, ctx: Context) -> types.CallToolResult | types.InputRequiredResult:
    """Greets someone in the words of the caller's model."""
    answer = (ctx.input_responses or {}).get("greeting")
    if not isinstance(answer, types.CreateMessageResult):
        message = types.SamplingMessage(
            role="user", content=types.TextContent(type="text", text=f"Greet {name} warmly.")
        )
        ask = types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(messages=[message], max_tokens=33)
        )
        return types.InputRequiredResult(input_requests={"greeting": ask}, request_state="asked")
    text = answer.content.text if isinstance(answer.content, types.TextContent) else ""
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"The model says: {text}")])


async def main() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    # The socket listens already: a client connecting before the server is up waits in its
    # backlog, so the port can be told now.
    print(f"listening {listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    await uvicorn.Server(config).serve(sockets=[listener])


if __name__ == "__main__":
    asyncio.run(main())
