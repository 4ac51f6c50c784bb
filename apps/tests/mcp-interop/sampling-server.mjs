// An MCP server built with the official TypeScript SDK (Streamable HTTP): once a client has
// initialized and opened its stream, the server asks it for a completion with
// sampling/createMessage, prints the result as one JSON line and exits.
// Usage: node sampling-server.mjs   (prints "listening <port>" first)
import http from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

const server = new Server({ name: "sdk-server", version: "1.0.0" }, { capabilities: {} });
const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID() });
await server.connect(transport);

let asked = false;
async function ask() {
  if (asked) return;
  asked = true;
  try {
    const result = await server.createMessage({
      messages: [{ role: "user", content: { type: "text", text: "Hello from the SDK server." } }],
      systemPrompt: "Answer briefly.",
      maxTokens: 33,
      modelPreferences: { hints: [{ name: "mock" }] },
    });
    console.log(JSON.stringify({ result }));
    process.exit(0);
  } catch (error) {
    console.log(JSON.stringify({ error: String(error) }));
    process.exit(1);
  }
}

const httpServer = http.createServer(async (req, res) => {
  let body = "";
  for await (const chunk of req) body += chunk;
  const parsed = body ? JSON.parse(body) : undefined;
  // The client's stream is open once its GET is in: ask then (the SDK sends server requests
  // made outside any client request down that stream).
  if (req.method === "GET") setTimeout(ask, 200);
  await transport.handleRequest(req, res, parsed);
});
httpServer.listen(0, "127.0.0.1", () => console.log(`listening ${httpServer.address().port}`));
setTimeout(() => { console.log(JSON.stringify({ error: "timed out" })); process.exit(1); }, 30000);
