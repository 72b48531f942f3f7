// Connects to the URL with Node's ws client, sends a text, a binary and a large text message,
// prints one JSON line with what came back and how the connection closed. Bounded: 10 s.
import { createHash } from "node:crypto";
import WebSocket from "ws";

const [url, mode] = process.argv.slice(2);
const deflate = mode === "deflate";
const large = "asgiws ".repeat(50000);
const sent = ["hello from node", Buffer.from([0, 1, 2, 254, 255]), large];
const digest = (data) => createHash("sha256").update(data).digest("hex");

const ws = new WebSocket(url, ["chat", "superchat"], { perMessageDeflate: deflate });
const received = [];
const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 10000);

ws.on("open", () => {
  for (const message of sent) ws.send(message);
});
ws.on("message", (data, isBinary) => {
  received.push({ binary: isBinary, length: data.length, sha256: digest(data) });
  if (received.length === sent.length) ws.close(4000, "node done");
});
ws.on("close", (code, reason) => {
  clearTimeout(timer);
  const expected = sent.map((m) => ({
    binary: typeof m !== "string",
    length: Buffer.byteLength(m),
    sha256: digest(m),
  }));
  console.log(
    JSON.stringify({
      protocol: ws.protocol,
      extensions: ws.extensions,
      received,
      expected,
      code,
      reason: reason.toString(),
    })
  );
});
ws.on("error", (error) => {
  console.error(`error: ${error.message}`);
  process.exit(1);
});
