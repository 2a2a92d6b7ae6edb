// echo-server.mjs - a TCP echo backend for the browser tests.
// Usage: node echo-server.mjs PORTFILE [BANNER]
// Listens on 127.0.0.1 (an ephemeral port), writes the port to PORTFILE once
// listening, echoes every byte back, and half-closes when the client does.
// With BANNER, each connection first gets BANNER followed by "\r\n" (a tag
// telling which backend answered, or known text for a recording).
// Stops on SIGTERM/SIGINT.
import { createServer } from 'node:net';
import { writeFileSync, renameSync } from 'node:fs';

const portFile = process.argv[2];
const banner = process.argv[3];
if (!portFile) {
  console.error('usage: node echo-server.mjs PORTFILE [BANNER]');
  process.exit(2);
}

const server = createServer({ allowHalfOpen: true }, (sock) => {
  sock.on('error', () => sock.destroy());
  if (banner !== undefined) sock.write(banner + '\r\n');
  sock.pipe(sock); // pipe() applies backpressure both ways and ends on EOF
});
server.listen(0, '127.0.0.1', () => {
  writeFileSync(portFile + '.tmp', String(server.address().port));
  renameSync(portFile + '.tmp', portFile);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
