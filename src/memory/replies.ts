// The coordinator's reply queue as a participant sees it, in memory: what was sent, in order, copied.
import type { ReplyMessage } from '../core/messages';
import type { ReplySender } from '../core/ports';

export class MemoryReplySender implements ReplySender {
  private readonly sent: ReplyMessage[] = [];

  async send(message: ReplyMessage): Promise<void> {
    this.sent.push(structuredClone(message));
  }

  /** Takes (and forgets) what was sent so far. */
  drain(): ReplyMessage[] {
    return this.sent.splice(0).map((m) => structuredClone(m));
  }
}
