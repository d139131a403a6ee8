// A long-running participant consumer (containers, `npm start`): long-polls the request queue and
// runs each message through the barrier with bounded concurrency. A message is deleted only after
// its reply was sent; anything else leaves it for SQS to redeliver and, in the end, dead-letter.
// Handled messages are deleted together, in DeleteMessageBatch requests of up to 10.
import { Logger } from '@aws-lambda-powertools/logger';
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { type DeadLetterTarget, deadLetterAttributes, readRedrivePolicy } from '../aws/queues';
import { systemClock, systemSleep } from '../aws/system';
import type { Sleep } from '../core/ports';
import { BarrierBusyError, ProtocolViolationError } from '../core/barrier';
import { type Repeating, repeatEvery } from './repeat';
import { type InDoubtInquiry, MalformedMessageError, type ParticipantLogger, type RunnerOptions, createRunner } from './runner';

export interface ConsumerOptions extends RunnerOptions {
  queueUrl: string;
  concurrency?: number;
  waitTimeSeconds?: number;
  visibilityTimeoutSeconds?: number;
  /** Visibility is extended for a slow handler up to this long; then SQS may redeliver it. */
  maxHandlerSeconds?: number;
  /** How often watched in-doubt transactions are checked (default 1 s; needs `decisions`). */
  inquiryIntervalMs?: number;
}

export interface Consumer {
  /** Ends the long poll at once and waits for the messages in flight. */
  stop(): Promise<void>;
}

/** SQS returns at most 10 messages per receive. */
const MAX_BATCH = 10;
const RECEIVE_RETRY_MS = 1_000;
/** In-doubt questions asked per inquiry tick, at most. */
const INQUIRIES_PER_TICK = 16;
/**
 * How long a handled message waits, at most, for others to be deleted with it. Off the critical
 * path (its reply is sent), and far inside the shortest visibility timeout (1 s).
 */
export const DELETE_LINGER_MS = 200;
/** The reason a linger is cut short (without one, abort() builds a DOMException each time). */
const FLUSHED = new Error('flushed');

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
  const nowMs = options.nowMs ?? systemClock;
  const sleep = options.sleep ?? systemSleep;
  const logger: ParticipantLogger = options.logger ?? new Logger({ serviceName: options.participant.service });
  // Messages whose prepare waits for a lock do not count against the concurrency (up to a bound):
  // otherwise waiting prepares could fill every slot, and the COMMIT/ABORT messages that would
  // release the locks they wait for would never be received.
  const maxParked = concurrency * 4;
  let parked = 0;
  let capacityChanged: () => void = () => undefined;
  const onLockWait = (waiting: boolean) => {
    parked += waiting ? 1 : -1;
    capacityChanged();
  };
  const runner = createRunner({ ...options, sqs, logger, onLockWait });
  const poll = new AbortController();
  const inFlight = new Set<Promise<void>>();
  /** Messages whose handler is running (the rest of `inFlight` waits on locks or deletes). */
  let handling = 0;
  /** Handled messages waiting to be deleted, and the deletes under way (stop waits for them). */
  const toDelete: { message: Message; done: (err?: unknown) => void }[] = [];
  const deleting = new Set<Promise<void>>();
  let lingering: AbortController | undefined;
  let stopping = false;
  const inquiry = runner.inDoubt ? startInquiry(sleep, runner.inDoubt, options.inquiryIntervalMs ?? 1_000, logger) : undefined;
  let redrive: Promise<DeadLetterTarget | undefined> | undefined;

  /** The queue's dead-letter queue and receive limit, from its RedrivePolicy (read once). */
  function deadLetterTarget(): Promise<DeadLetterTarget | undefined> {
    redrive ??= readRedrivePolicy(sqs, queueUrl).catch((err: unknown) => {
      logger.warn('could not read the queue redrive policy; failed messages are left to SQS', { queueUrl, error: err as Error });
      redrive = undefined;
      return undefined;
    });
    return redrive;
  }

  /**
   * Moves a message that will not succeed to the dead-letter queue with the reason attached
   * (message attributes), instead of leaving SQS to move it without one. False if there is no DLQ.
   */
  async function deadLetter(message: Message, reason: string): Promise<boolean> {
    const target = await deadLetterTarget();
    if (!target) return false;
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: target.url,
        MessageBody: message.Body ?? '',
        MessageAttributes: deadLetterAttributes(reason, options.participant.service, {
          'dtc-source-message-id': message.MessageId ?? '',
          'dtc-receive-count': receiveCount(message),
        }),
      }),
    );
    await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }));
    return true;
  }

  async function deadLetterOrLeave(message: Message, reason: string, log: string): Promise<void> {
    const moved = await deadLetter(message, reason).catch((err: unknown) => {
      logger.warn('could not move the message to the dead-letter queue; SQS will', { messageId: message.MessageId, error: err as Error });
      return false;
    });
    logger.error(`${log}: ${moved ? 'moved to the dead-letter queue' : 'left for the dead-letter queue'}`, { messageId: message.MessageId, reason });
  }

  /**
   * Deletes a handled message together with others: at once when 10 are waiting or when no other
   * message is being handled (none would join soon), else after DELETE_LINGER_MS at most. Resolves
   * once SQS deleted it; rejects with its entry's failure.
   */
  function deleteHandled(message: Message): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      toDelete.push({ message, done: (err) => (err === undefined ? resolve() : reject(err)) });
      if (toDelete.length >= MAX_BATCH || handling === 0) flushDeletes();
      else if (!lingering) {
        const linger = (lingering = new AbortController());
        sleep(DELETE_LINGER_MS, linger.signal).then(
          () => lingering === linger && flushDeletes(),
          () => undefined,
        );
      }
    });
  }

  function flushDeletes(): void {
    lingering?.abort(FLUSHED);
    lingering = undefined;
    while (toDelete.length > 0) {
      const batch = toDelete.splice(0, MAX_BATCH);
      const Entries = batch.map((e, i) => ({ Id: String(i), ReceiptHandle: e.message.ReceiptHandle }));
      void sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries })).then(
        (out) => {
          const failed = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
          const deleted = new Set((out.Successful ?? []).map((ok) => ok.Id));
          batch.forEach((e, i) => {
            const f = failed.get(String(i));
            if (f) e.done(Object.assign(new Error(`DeleteMessageBatch entry failed: ${f.Code}${f.Message ? `: ${f.Message}` : ''}`), { name: f.Code ?? 'DeleteFailed' }));
            else e.done(deleted.has(String(i)) ? undefined : new Error('DeleteMessageBatch answered nothing for this message'));
          });
        },
        (err: unknown) => batch.forEach((e) => e.done(err)),
      );
    }
  }

  async function changeVisibility(message: Message, seconds: number): Promise<void> {
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: seconds }));
  }

  /** Never rejects: every failure is logged and the message left to SQS. */
  async function processMessage(message: Message): Promise<void> {
    const startedMs = nowMs();
    const extender = repeatEvery(
      sleep,
      Math.max(500, (visibilityTimeoutSeconds * 1000) / 2),
      async () => {
        if (nowMs() - startedMs > maxHandlerMs) return;
        await changeVisibility(message, visibilityTimeoutSeconds);
      },
      (err) => logger.warn('could not extend message visibility', { messageId: message.MessageId, error: err as Error }),
    );
    let failure: { err: unknown } | undefined;
    handling++;
    try {
      await runner.handleBody(message.Body ?? '');
    } catch (err) {
      failure = { err };
    } finally {
      // Before the message is deleted or rescheduled: an extension still in flight would race the
      // delete (and fail with MessageNotInflight) or undo the new visibility.
      await extender.stop();
      handling--;
    }
    if (failure) {
      // The last handler to end sends what waits to be deleted.
      if (handling === 0 && toDelete.length > 0) flushDeletes();
      await onFailure(message, failure.err);
      return;
    }
    // Off the message's slot: the next receive need not wait for the batch to fill.
    const deleted: Promise<void> = deleteHandled(message)
      .catch((err: unknown) => onFailure(message, err))
      .catch((err: unknown) => logger.error('could not handle a failed delete; SQS will redeliver the message', { messageId: message.MessageId, error: err as Error }))
      .finally(() => deleting.delete(deleted));
    deleting.add(deleted);
  }

  async function onFailure(message: Message, err: unknown): Promise<void> {
    const messageId = message.MessageId;
    if (err instanceof BarrierBusyError) {
      // Another run of the same prepare is alive: look again when its claim would have run out.
      const seconds = Math.min(visibilityTimeoutSeconds, Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
      await changeVisibility(message, seconds).catch((e: unknown) => logger.warn('could not reschedule a busy message', { messageId, error: e as Error }));
    } else if (err instanceof MalformedMessageError) {
      await deadLetterOrLeave(message, `malformed: ${err.message}`, 'malformed participant message');
    } else if (err instanceof ProtocolViolationError) {
      await deadLetterOrLeave(message, `protocol violation: ${err.message}`, 'PROTOCOL VIOLATION: message not acknowledged');
    } else {
      const target = await deadLetterTarget();
      if (target && receiveCount(message) >= target.maxReceiveCount) {
        // Its last delivery: SQS would move it without saying why.
        await deadLetterOrLeave(message, `failed ${receiveCount(message)} times, last: ${(err as Error).name}: ${(err as Error).message}`, 'participant message keeps failing');
      } else {
        logger.error('participant message failed; SQS will redeliver it', { messageId, error: err as Error });
      }
    }
  }

  // Aborting the poll on stop may drop a batch the server just handed out: those messages only stay
  // invisible until their visibility timeout, then come back.
  async function receive(max: number): Promise<Message[]> {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: max,
        WaitTimeSeconds: waitTimeSeconds,
        VisibilityTimeout: visibilityTimeoutSeconds,
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
      { abortSignal: poll.signal },
    );
    return out.Messages ?? [];
  }

  const loop = (async () => {
    while (!stopping) {
      const active = inFlight.size - Math.min(parked, maxParked);
      if (active >= concurrency) {
        await Promise.race([...inFlight, new Promise<void>((resolve) => (capacityChanged = resolve))]);
        continue;
      }
      let messages: Message[];
      try {
        messages = await receive(Math.min(MAX_BATCH, concurrency - active));
      } catch (err) {
        if (stopping) break;
        logger.error('receive failed; retrying', { queueUrl, error: err as Error });
        // A stop aborts the pause too (and the loop then ends).
        await sleep(RECEIVE_RETRY_MS, poll.signal).catch((e: unknown) => {
          if (!poll.signal.aborted) throw e;
        });
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
      await inquiry?.stop();
      await loop;
      await Promise.all(inFlight);
      flushDeletes();
      await Promise.all(deleting);
    },
  };
}

function receiveCount(message: Message): number {
  return Number(message.Attributes?.ApproximateReceiveCount ?? 1);
}

/** Asks about in-doubt transactions on a timer (one tick at a time); first finds the stored ones. */
function startInquiry(sleep: Sleep, inDoubt: InDoubtInquiry, intervalMs: number, logger: ParticipantLogger): Repeating {
  let found = false;
  const tick = async (): Promise<void> => {
    if (!found) {
      const { watched } = await inDoubt.recoverStored();
      found = true;
      if (watched > 0) logger.info('restart scan: watching undecided transactions', { watched });
    }
    await inDoubt.inquireDue(INQUIRIES_PER_TICK);
  };
  return repeatEvery(sleep, Math.max(10, intervalMs), tick, (err) => logger.warn('in-doubt inquiry tick failed', { error: err as Error }));
}
