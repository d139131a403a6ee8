// Step Functions calls the coordinator makes: start a group's supervisor, ask after one.
import { DescribeExecutionCommand, ExecutionAlreadyExists, ExecutionDoesNotExist, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { WorkflowPort } from '../core/ports';
import type { ExecutionState } from '../core/recovery';

export class Workflow implements WorkflowPort {
  constructor(private readonly sfn: SFNClient = new SFNClient({})) {}

  /**
   * Start an execution. Standard workflows treat a same-name, same-input start of a running
   * execution as that execution, so every caller starting a group's supervisor with the same input
   * starts one. A name taken by a closed execution (or another input) answers 'exists'.
   */
  async start(stateMachineArn: string, name: string, input: unknown): Promise<'started' | 'exists'> {
    try {
      await this.sfn.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }));
      return 'started';
    } catch (err) {
      if (err instanceof ExecutionAlreadyExists) return 'exists';
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
