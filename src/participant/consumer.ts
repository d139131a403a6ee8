// A long-running participant consumer (containers, `npm start`): long-polls the request queue and
// runs each message through the barrier with bounded concurrency. A message is deleted only after
// its reply was sent; anything else leaves it for SQS to redeliver and, in the end, dead-letter.
import { Logger } from '@aws-lambda-powertools/logger';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, type Message, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { BarrierBusyError, ProtocolViolationError } from '../core/barrier';
import { MalformedMessageError, type ParticipantLogger, type RunnerOptions, createRunner } from './runner';

export interface ConsumerOptions extends RunnerOptions {
  queueUrl: string;
  concurrency?: number;
  waitTimeSeconds?: number;
  visibilityTimeoutSeconds?: number;
  /** Visibility is extended for a slow handler up to this long; then SQS may redeliver it. */
  maxHandlerSeconds?: number;
}

export interface Consumer {
  /** Ends the long poll at once and waits for the messages in flight. */
  stop(): Promise<void>;
}

/** SQS returns at most 10 messages per receive. */
const MAX_BATCH = 10;
const RECEIVE_RETRY_MS = 1_000;

export function startConsumer(options: ConsumerOptions): Consumer {
  const { queueUrl } = options;
  const concurrency = options.concurrency ?? 16;
  const waitTimeSeconds = options.waitTimeSeconds ?? 20;
  const visibilityTimeoutSeconds = options.visibilityTimeoutSeconds ?? 60;
  const maxHandlerMs = (options.maxHandlerSeconds ?? 900) * 1000;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) throw new Error(`concurrency must be an integer in 1..1000, got ${concurrency}`);
  if (!Number.isInteger(visibilityTimeoutSeconds) || visibilityTimeoutSeconds < 1) {
    throw new Error(`visibilityTimeoutSeconds must be a positive integer, got ${visibilityTimeoutSeconds}`);
  }
  const sqs = options.sqs ?? new SQSClient({});
  const logger: ParticipantLogger = options.logger ?? new Logger({ serviceName: options.participant.service });
  const runner = createRunner({ ...options, sqs, logger });
  const poll = new AbortController();
  const inFlight = new Set<Promise<void>>();
  let stopping = false;

  async function changeVisibility(message: Message, seconds: number): Promise<void> {
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: seconds }));
  }

  /** Never rejects: every failure is logged and the message left to SQS. */
  async function processMessage(message: Message): Promise<void> {
    const startedMs = Date.now();
    const extender = setInterval(
      () => {
        if (Date.now() - startedMs > maxHandlerMs) return;
        changeVisibility(message, visibilityTimeoutSeconds).catch((err: unknown) =>
          logger.warn('could not extend message visibility', { messageId: message.MessageId, error: err as Error }),
        );
      },
      Math.max(500, (visibilityTimeoutSeconds * 1000) / 2),
    );
    try {
      await runner.handleBody(message.Body ?? '');
      await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }));
    } catch (err) {
      await onFailure(message, err);
    } finally {
      clearInterval(extender);
    }
  }

  async function onFailure(message: Message, err: unknown): Promise<void> {
    const messageId = message.MessageId;
    if (err instanceof BarrierBusyError) {
      // Another run of the same prepare is alive: look again when its claim would have run out.
      const seconds = Math.min(visibilityTimeoutSeconds, Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
      await changeVisibility(message, seconds).catch((e: unknown) => logger.warn('could not reschedule a busy message', { messageId, error: e as Error }));
    } else if (err instanceof MalformedMessageError) {
      logger.error('malformed participant message: left for the dead-letter queue', { messageId, reason: err.message });
    } else if (err instanceof ProtocolViolationError) {
      logger.error('PROTOCOL VIOLATION: message not acknowledged, it will be dead-lettered', { messageId, reason: err.message });
    } else {
      logger.error('participant message failed; SQS will redeliver it', { messageId, error: err as Error });
    }
  }

  // Aborting the poll on stop may drop a batch the server just handed out: those messages only stay
  // invisible until their visibility timeout, then come back.
  async function receive(max: number): Promise<Message[]> {
    const out = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: max, WaitTimeSeconds: waitTimeSeconds, VisibilityTimeout: visibilityTimeoutSeconds }),
      { abortSignal: poll.signal },
    );
    return out.Messages ?? [];
  }

  const loop = (async () => {
    while (!stopping) {
      if (inFlight.size >= concurrency) {
        await Promise.race(inFlight);
        continue;
      }
      let messages: Message[];
      try {
        messages = await receive(Math.min(MAX_BATCH, concurrency - inFlight.size));
      } catch (err) {
        if (stopping) break;
        logger.error('receive failed; retrying', { queueUrl, error: err as Error });
        await sleep(RECEIVE_RETRY_MS, poll.signal);
        continue;
      }
      for (const message of messages) {
        const done: Promise<void> = processMessage(message).finally(() => inFlight.delete(done));
        inFlight.add(done);
      }
    }
  })();

  return {
    async stop() {
      stopping = true;
      poll.abort();
      await loop;
      await Promise.all(inFlight);
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
