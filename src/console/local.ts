// The console on the embedded stack: served by the local API under `/console` (`/dashboard`, the
// page it replaced, redirects there), reading the stack's tables and queues with its clients, acting
// through its API, and streaming the events its EventBridge endpoint received.
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../local/aws-env';
import { signedHeaders } from '../local/sigv4';
import type { LocalStack } from '../local/stack';
import { consoleHandler } from './handler';
import { ConsoleSource } from './source';

export function addConsole(stack: LocalStack): ConsoleSource {
  const { outputs } = stack;
  const source = new ConsoleSource({
    targets: outputs,
    dynamodb: stack.dynamodb,
    sqs: stack.sqs,
    // With DTC_REQUIRE_AUTH=1 the gateway checks signatures: the console signs as any client would.
    ...(stack.api.auth ? { sign: (request) => signedHeaders(request, LOCAL_CREDENTIALS, LOCAL_REGION) } : {}),
  });
  stack.api.addHandler({ prefix: '/console', serve: consoleHandler(source, { target: 'embedded', apiUrl: outputs.apiUrl }, stack.events) });
  stack.api.addHandler({
    prefix: '/dashboard',
    serve: async (_req, res) => {
      res.writeHead(301, { location: '/console' }).end();
    },
  });
  return source;
}
