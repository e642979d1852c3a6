// The official `graphql-ws` client against a running clusterd: an invalid subscription must reach
// the client's `error` callback, and a subscription of a domain not built yet must come as a
// result with errors, then complete. Prints one JSON report on stdout; run by
// tests/graphql_protocol.rs as `node graphql_ws_client.mjs ws://host:port/graphql/ws`.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const url = process.argv[2];
const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });

// Subscribes to `query` and settles with which callback the client called, and what it carried.
function outcome(query) {
  return new Promise((resolve) => {
    const seen = { callback: null, errors: null, completed: false };
    client.subscribe(
      { query },
      {
        next: (result) => {
          if (seen.callback === null) {
            seen.callback = 'next';
            seen.errors = result.errors ?? null;
          }
        },
        error: (errors) => {
          seen.callback = 'error';
          seen.errors = errors;
          resolve(seen);
        },
        complete: () => {
          seen.completed = true;
          resolve(seen);
        },
      },
    );
  });
}

const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 10000);

const invalid = await outcome('subscription { noSuchField { seq } }');
const notBuilt = await outcome('subscription { instanceRecoveryEvents { failedInstance } }');
const firstError = (notBuilt.errors ?? [])[0] ?? {};
console.log(
  JSON.stringify({
    invalid: { callback: invalid.callback, errors: invalid.errors },
    not_built: {
      callback: notBuilt.callback,
      code: firstError.extensions?.code ?? null,
      domain: firstError.extensions?.domain ?? null,
      completed: notBuilt.completed,
    },
  }),
);
clearTimeout(timer);
await client.dispose();
