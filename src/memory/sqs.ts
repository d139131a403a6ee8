// An SQS standard queue in memory, on an injected clock, and the queue ports over it. What SQS
// does for us is modelled (visibility timeout and redelivery, receipt handles that go stale on the
// next receive, receive counts, redrive to a dead-letter queue after maxReceiveCount); what SQS
// may do to us (duplicates, loss, reordering) is not random here: whoever drives the model decides
// through `onSend` or by wrapping it, so a seeded simulation replays exactly.
import type { Clock, ParticipantQueuesPort, ReplySender } from '../core/ports';
import type { ParticipantMessage, ReplyMessage } from '../core/messages';
import { deadLetterAttributes } from '../aws/queues';

export interface MessageAttribute {
  DataType: 'String' | 'Number';
  StringValue: string;
}
export type MessageAttributes = Record<string, MessageAttribute>;

export interface ReceivedMessage {
  messageId: string;
  body: string;
  attributes: MessageAttributes;
  /** Honoured until the message is received again (then stale: SQS ignores it) or deleted. */
  receiptHandle: string;
  /** ApproximateReceiveCount: 1 on the first receive. */
  receiveCount: number;
  sentAtMs: number;
}

/** What happens to one send: how many copies arrive (0 = lost, 2 = duplicated) and after what delay. */
export interface SendFate {
  copies: number;
  delayMs: number;
}

export interface MemoryQueueOptions {
  clock: Clock;
  /** The queue's default visibility timeout (SQS default: 30 s). */
  visibilityTimeoutMs?: number;
  /** Redrive policy: a message received `maxReceiveCount` times moves to `deadLetterQueue` on the next receive. */
  redrive?: { deadLetterQueue: MemoryQueue; maxReceiveCount: number };
  /** Faults decided by the driver (a simulation); without it every send arrives once, at once. */
  onSend?: (queue: string, body: string, attributes: MessageAttributes) => SendFate;
}

/** What SQS answers for a receipt handle it no longer honours (the SDK's error name). */
export class ReceiptHandleIsInvalid extends Error {
  override readonly name = 'ReceiptHandleIsInvalid';
}

interface Stored {
  messageId: string;
  seq: number;
  body: string;
  attributes: MessageAttributes;
  sentAtMs: number;
  visibleAtMs: number;
  receiveCount: number;
  /** The receipt handle of the latest receive; earlier ones are stale. */
  receipt?: string;
}

/** SQS limits, so the model refuses what SQS refuses. */
export const MAX_RECEIVE_MESSAGES = 10;
export const MAX_VISIBILITY_TIMEOUT_MS = 12 * 3_600_000;
export const MAX_MESSAGE_BYTES = 256 * 1024;
/** A bound on the model's memory: a queue this deep means a consumer stopped, which a run should see. */
export const MAX_QUEUE_DEPTH = 1_000_000;

export class MemoryQueue {
  private readonly messages = new Map<string, Stored>();
  private seq = 0;
  private receipts = 0;
  private readonly visibilityTimeoutMs: number;

  constructor(
    readonly name: string,
    private readonly options: MemoryQueueOptions,
  ) {
    this.visibilityTimeoutMs = options.visibilityTimeoutMs ?? 30_000;
    checkVisibility(this.visibilityTimeoutMs);
    const redrive = options.redrive;
    if (redrive && (!Number.isInteger(redrive.maxReceiveCount) || redrive.maxReceiveCount < 1 || redrive.maxReceiveCount > 1000)) {
      throw new Error(`maxReceiveCount must be an integer in 1..1000, got ${redrive.maxReceiveCount}`);
    }
  }

  /** SendMessage; answers the message id (of the first copy; none when the fault hook lost it). */
  send(body: string, attributes: MessageAttributes = {}, delayMs = 0): string {
    if (Buffer.byteLength(body) > MAX_MESSAGE_BYTES) throw new Error(`message body is ${Buffer.byteLength(body)} bytes, more than SQS allows`);
    const fate = this.options.onSend?.(this.name, body, attributes) ?? { copies: 1, delayMs: 0 };
    const messageId = this.messageId(this.seq);
    for (let i = 0; i < fate.copies; i++) this.enqueue(body, attributes, delayMs + fate.delayMs);
    return messageId;
  }

  /** ReceiveMessage: up to `max` visible messages, oldest first, hidden for the visibility timeout. */
  receive(max = 1, visibilityTimeoutMs = this.visibilityTimeoutMs): ReceivedMessage[] {
    if (!Number.isInteger(max) || max < 1 || max > MAX_RECEIVE_MESSAGES) throw new Error(`max must be 1..${MAX_RECEIVE_MESSAGES}, got ${max}`);
    checkVisibility(visibilityTimeoutMs);
    const nowMs = this.options.clock();
    const received: ReceivedMessage[] = [];
    for (const m of this.visible(nowMs)) {
      if (received.length >= max) break;
      const redrive = this.options.redrive;
      if (redrive && m.receiveCount >= redrive.maxReceiveCount) {
        this.messages.delete(m.messageId);
        redrive.deadLetterQueue.enqueue(m.body, m.attributes, 0, m.messageId);
        continue;
      }
      m.receiveCount++;
      m.receipt = `${this.name}/${m.messageId}/${++this.receipts}`;
      m.visibleAtMs = nowMs + visibilityTimeoutMs;
      received.push({ messageId: m.messageId, body: m.body, attributes: { ...m.attributes }, receiptHandle: m.receipt, receiveCount: m.receiveCount, sentAtMs: m.sentAtMs });
    }
    return received;
  }

  /**
   * DeleteMessage; true when it deleted. A stale receipt (the message was received again since)
   * deletes nothing and is no error: "the request succeeds, but the message will not be deleted"
   * (SQS DeleteMessage reference; fauxqs does the same). So is a receipt of a deleted message.
   */
  delete(receiptHandle: string): boolean {
    const m = this.byReceipt(receiptHandle);
    if (!m) return false;
    this.messages.delete(m.messageId);
    return true;
  }

  /** ChangeMessageVisibility: hidden for `timeoutMs` from now (0: visible at once); false (ignored) for a stale receipt. */
  changeVisibility(receiptHandle: string, timeoutMs: number): boolean {
    checkVisibility(timeoutMs);
    const m = this.byReceipt(receiptHandle);
    if (!m) return false;
    m.visibleAtMs = this.options.clock() + timeoutMs;
    return true;
  }

  /** ApproximateNumberOfMessages (visible, delayed included) and ...NotVisible (in flight). */
  depth(): { visible: number; inFlight: number } {
    const nowMs = this.options.clock();
    let inFlight = 0;
    for (const m of this.messages.values()) if (m.receipt !== undefined && m.visibleAtMs > nowMs) inFlight++;
    return { visible: this.messages.size - inFlight, inFlight };
  }

  /** When the earliest hidden message becomes visible again: when a driver should poll next. */
  nextVisibleAt(): number | undefined {
    let next: number | undefined;
    for (const m of this.messages.values()) if (next === undefined || m.visibleAtMs < next) next = m.visibleAtMs;
    return next;
  }

  purge(): void {
    this.messages.clear();
  }

  private enqueue(body: string, attributes: MessageAttributes, delayMs: number, messageId?: string): void {
    if (this.messages.size >= MAX_QUEUE_DEPTH) throw new Error(`queue ${this.name} holds ${MAX_QUEUE_DEPTH} messages: nobody consumes it`);
    const seq = this.seq++;
    const id = messageId && !this.messages.has(messageId) ? messageId : this.messageId(seq);
    const nowMs = this.options.clock();
    this.messages.set(id, { messageId: id, seq, body, attributes: { ...attributes }, sentAtMs: nowMs, visibleAtMs: nowMs + delayMs, receiveCount: 0 });
  }

  private visible(nowMs: number): Stored[] {
    return [...this.messages.values()].filter((m) => m.visibleAtMs <= nowMs).sort((a, b) => a.seq - b.seq);
  }

  /** The message a receipt handle still stands for: the latest receive of a message still here. */
  private byReceipt(receiptHandle: string): Stored | undefined {
    const [queue, messageId] = receiptHandle.split('/');
    if (queue !== this.name || messageId === undefined) throw new ReceiptHandleIsInvalid(`not a receipt handle of queue ${this.name}: ${receiptHandle}`);
    const m = this.messages.get(messageId);
    return m?.receipt === receiptHandle ? m : undefined;
  }

  private messageId(seq: number): string {
    return `${this.name}-${seq}`;
  }
}

function checkVisibility(ms: number): void {
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_VISIBILITY_TIMEOUT_MS) throw new Error(`visibility timeout must be 0..12 h in whole ms, got ${ms}`);
}

/** ParticipantQueuesPort over memory queues: one request queue per participant, each maybe with its DLQ. */
export class MemoryParticipantQueues implements ParticipantQueuesPort {
  constructor(
    private readonly queues: Record<string, MemoryQueue>,
    /** Participant -> its request queue's DLQ; where in-doubt copies go. */
    private readonly deadLetterQueues: Record<string, MemoryQueue> = {},
    /** Where refused replies go. */
    private readonly replyDeadLetterQueue?: MemoryQueue,
  ) {}

  get services(): string[] {
    return Object.keys(this.queues);
  }

  deadLetterReply(body: string, reason: string, owner: string): Promise<void> {
    if (!this.replyDeadLetterQueue) return Promise.reject(new Error('no reply dead-letter queue is configured'));
    this.replyDeadLetterQueue.send(body, deadLetterAttributes(reason, owner, { 'dtc-source': 'reply' }));
    return Promise.resolve();
  }

  send(messages: ParticipantMessage[]): Promise<void> {
    // Checked before any send, like the SQS adapter's sends that all start at once and the first refusal fails the call.
    for (const m of messages) if (!this.queues[m.participant]) return Promise.reject(new Error(`no request queue is configured for participant '${m.participant}'`));
    for (const m of messages) this.queues[m.participant]!.send(JSON.stringify(m));
    return Promise.resolve();
  }

  deadLetter(messages: ParticipantMessage[], reason: string): Promise<string[]> {
    const missing: string[] = [];
    for (const m of messages) {
      const dlq = this.deadLetterQueues[m.participant];
      if (!dlq) missing.push(m.participant);
      else dlq.send(JSON.stringify(m), deadLetterAttributes(reason, m.participant, { 'dtc-source': 'coordinator' }));
    }
    return Promise.resolve(missing);
  }
}

/** ReplySender over the coordinator's memory reply queue. */
export class MemoryReplySender implements ReplySender {
  constructor(private readonly queue: MemoryQueue) {}

  send(message: ReplyMessage): Promise<void> {
    this.queue.send(JSON.stringify(message));
    return Promise.resolve();
  }
}
