// An MCP client built with the official TypeScript SDK: it declares sampling, answers the
// server's sampling/createMessage with a fixed completion, calls a tool and prints the result
// as one JSON line. Usage: node sampling-client.mjs <streamable|sse> <url> <token>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [transportName, url, token] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${token}` };
const transport = transportName === "sse"
  ? new SSEClientTransport(new URL(url), {
      requestInit: { headers },
      eventSourceInit: { fetch: (u, init) => fetch(u, { ...init, headers: { ...init?.headers, ...headers } }) },
    })
  : new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });

const client = new Client({ name: "sdk-sampler", version: "1.0.0" }, { capabilities: { sampling: {} } });
let asked = null;
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  asked = request.params;
  return {
    role: "assistant",
    content: { type: "text", text: "SDK summary." },
    model: "sdk-model",
    stopReason: "endTurn",
  };
});
await client.connect(transport);
const tools = await client.listTools();
const result = await client.callTool({ name: "summarize", arguments: { text: "Text from the SDK." } });
console.log(JSON.stringify({
  protocol: transport.protocolVersion ?? null,
  tools: tools.tools.map((t) => t.name),
  asked,
  result,
}));
await client.close();
