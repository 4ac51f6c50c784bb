"""An official MCP Python SDK client (``mcp`` 2.3) against this server's ``/sampling/mcp``.

Run by ``apps/tests/sampling_interop_python.rs``:
``python sampling_client.py MODE URL TOKEN`` where MODE is the SDK's ``Client(mode=...)``:
``auto`` (probe ``server/discover``, fall back to ``initialize``), ``legacy`` (the handshake) or
a pinned version (``2026-07-28``). The client declares sampling and elicitation; it lists the
tools, calls each one (the SDK answers our sampling and elicitation requests through the two
callbacks below, down the stream in the handshake era, by MRTR retries in the modern era), and
prints one JSON report on stdout for the test to check.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

CALLS = [
    ("summarize", {"text": "Text from the Python SDK."}),
    ("classify_sentiment", {"text": "The Python SDK works."}),
    ("explain_code", {"code": "print('hi')", "language": "Python"}),
]


async def main(mode: str, url: str, token: str) -> None:
    asked: list[dict] = []
    questions: list[dict] = []

    async def sampling(context, params: types.CreateMessageRequestParams):
        content = params.messages[0].content
        asked.append({"system": params.system_prompt, "text": getattr(content, "text", None)})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"Python answer {len(asked)}."),
            model="python-model",
            stop_reason="endTurn",
        )

    async def elicitation(context, params):
        questions.append({"message": params.message, "schema": params.requested_schema})
        return types.ElicitResult(action="accept", content={"length": "short"})

    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx2.Timeout(30.0, read=120.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(
            transport,
            mode=mode,
            sampling_callback=sampling,
            elicitation_callback=elicitation,
        ) as client:
            tools = await client.list_tools()
            results = {}
            for name, arguments in CALLS:
                result = await client.call_tool(name, arguments)
                results[name] = {
                    "text": result.content[0].text if result.content else None,
                    "isError": result.is_error,
                }
            report = {
                "protocol": client.protocol_version,
                "tools": [tool.name for tool in tools.tools],
                "results": results,
                "asked": asked,
                "questions": questions,
            }
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
