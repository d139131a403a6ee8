import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { Api } from './api';
import type { DtcConfig } from './build';
import type { DataStack } from './data-stack';
import { Functions } from './functions';
import { acknowledgeCoordinatorFindings } from './nag';
import { Observability, functionsIn } from './observability';
import { Deadlocks } from './locks';
import { Recovery } from './recovery';
import { Workflow } from './workflow';

export interface CoordinatorStackProps extends StackProps {
  config: DtcConfig;
  /** The stateful resources it works on; they live (and are retained) in their own stack. */
  data: Pick<DataStack, 'txTable' | 'lockTable' | 'replyQueue' | 'participantQueues'>;
}

/** The stateless half: functions, the per-transaction state machine and the API. */
export class CoordinatorStack extends Stack {
  readonly functions: Functions;
  readonly workflow: Workflow;
  readonly api: Api;
  readonly recovery: Recovery;
  readonly deadlocks: Deadlocks;
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: CoordinatorStackProps) {
    super(scope, id, props);
    const { txTable, lockTable, replyQueue, participantQueues } = props.data;
    this.functions = new Functions(this, 'Functions', { config: props.config, txTable, lockTable, replyQueue, participantQueues });
    const { api, dispatch, reply } = this.functions;
    this.workflow = new Workflow(this, 'Workflow', { txTable, dispatch });
    const { stateMachine } = this.workflow;

    // Only api starts executions, and the state machine does not reference api, so this is acyclic.
    api.addEnvironment('STATE_MACHINE_ARN', stateMachine.stateMachineArn);
    stateMachine.grantStartExecution(api);

    // Task-token calls authorize against the state machine. A separate policy rather than the
    // roles' default policies: the state machine references dispatch, whose creation waits for its
    // default policy, so putting the state machine's ARN there would be a dependency cycle.
    new iam.Policy(this, 'TaskCallbacks', {
      roles: [dispatch.role, reply.role].filter((r): r is iam.IRole => r !== undefined),
      statements: [
        new iam.PolicyStatement({
          // Success only: no code path fails a task (a failure is a thrown dispatch, which the task sees).
          actions: ['states:SendTaskSuccess'],
          resources: [stateMachine.stateMachineArn],
        }),
      ],
    });

    this.api = new Api(this, 'Api', { handler: api, config: props.config });
    this.recovery = new Recovery(this, 'Recovery', {
      functions: this.functions,
      txTable,
      stateMachine,
      localRateSeconds: props.config.sweeperLocalRateSeconds,
    });
    this.deadlocks = new Deadlocks(this, 'Deadlocks', { functions: this.functions, txTable, lockTable, stateMachine });

    new CfnOutput(this, 'ApiUrl', { value: this.api.restApi.url });
    new CfnOutput(this, 'TxTableName', { value: txTable.tableName });
    new CfnOutput(this, 'LockTableName', { value: lockTable.tableName });
    new CfnOutput(this, 'ReplyQueueUrl', { value: replyQueue.queueUrl });
    for (const [service, queue] of Object.entries(participantQueues)) {
      new CfnOutput(this, `${pascal(service)}QueueUrl`, { value: queue.queueUrl });
    }
    new CfnOutput(this, 'StateMachineArn', { value: stateMachine.stateMachineArn });

    // Last, so every function defined above gets its error alarm (a template test checks it).
    this.observability = new Observability(this, 'Observability', {
      config: props.config,
      functions: functionsIn(this),
      stateMachine,
      restApi: this.api.restApi,
      queues: { ...Object.fromEntries(Object.entries(participantQueues).map(([s, q]) => [`${s}-requests`, q])), replies: replyQueue },
    });
    acknowledgeCoordinatorFindings(this);
  }
}

/** `order-history` -> `OrderHistory`: output ids must be alphanumeric. */
function pascal(name: string): string {
  return name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}
