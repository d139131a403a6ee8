// Step Functions calls the coordinator makes: start an execution, wake a waiting task.
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  InvalidToken,
  SFNClient,
  SendTaskSuccessCommand,
  StartExecutionCommand,
  TaskDoesNotExist,
  TaskTimedOut,
} from '@aws-sdk/client-sfn';
import type { WorkflowPort } from '../core/ports';
import type { ExecutionState } from '../core/recovery';

export class Workflow implements WorkflowPort {
  constructor(private readonly sfn: SFNClient = new SFNClient({})) {}

  /**
   * Start the execution named after the transaction. Standard workflows treat a same-name,
   * same-input start as the same execution, so a retried request cannot start a second one.
   */
  async start(stateMachineArn: string, name: string, input: unknown): Promise<void> {
    try {
      await this.sfn.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }));
    } catch (err) {
      // Same name, other input: only possible if a record was rewritten, which create() forbids.
      if (err instanceof ExecutionAlreadyExists) return;
      throw err;
    }
  }

  /**
   * Complete a waiting task. A token whose task already completed, timed out or was retried is
   * expected (another writer or a newer attempt got there first): it answers false, not an error.
   */
  async signal(taskToken: string, output: unknown): Promise<boolean> {
    try {
      await this.sfn.send(new SendTaskSuccessCommand({ taskToken, output: JSON.stringify(output) }));
      return true;
    } catch (err) {
      // InvalidToken: a token issued by an earlier life of the service (the embedded stack after a
      // restart keeps no tokens); its task is gone just the same, and recovery re-drives the record.
      if (err instanceof TaskDoesNotExist || err instanceof TaskTimedOut || err instanceof InvalidToken) return false;
      throw err;
    }
  }

  /** The state of an execution; MISSING when it does not exist (never started, or lost with a local stack). */
  async describe(executionArn: string): Promise<ExecutionState> {
    try {
      const out = await this.sfn.send(new DescribeExecutionCommand({ executionArn }));
      if (!out.status || out.status === 'PENDING_REDRIVE') return 'RUNNING';
      return out.status;
    } catch (err) {
      if (err instanceof ExecutionDoesNotExist) return 'MISSING';
      throw err;
    }
  }
}

/** `arn:...:stateMachine:<name>` -> `arn:...:execution:<name>:<executionName>`. */
export function executionArn(stateMachineArn: string, executionName: string): string {
  const i = stateMachineArn.indexOf(':stateMachine:');
  if (i < 0) throw new Error(`not a state machine ARN: ${stateMachineArn}`);
  return `${stateMachineArn.slice(0, i)}:execution:${stateMachineArn.slice(i + ':stateMachine:'.length)}:${executionName}`;
}
