// Step Functions calls the coordinator makes: start an execution, wake a waiting task.
import { SFNClient, SendTaskSuccessCommand, StartExecutionCommand, ExecutionAlreadyExists, TaskDoesNotExist, TaskTimedOut } from '@aws-sdk/client-sfn';

export class Workflow {
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
      if (err instanceof TaskDoesNotExist || err instanceof TaskTimedOut) return false;
      throw err;
    }
  }
}
