import { ArnFormat, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { Api } from './api';
import { type DtcConfig, pascalCase } from './build';
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
  data: Pick<DataStack, 'txTable' | 'lockTable' | 'participantQueues' | 'replyQueues' | 'replyDeadLetterQueue' | 'eventBus'>;
}

/** The stateless half: functions, the group supervisors' state machine and the API. */
export class CoordinatorStack extends Stack {
  readonly functions: Functions;
  readonly workflow: Workflow;
  readonly api: Api;
  readonly recovery: Recovery;
  readonly deadlocks: Deadlocks;
  readonly observability: Observability;
  /** The supervisor state machine's name, and the policy that lets functions start and describe its executions. */
  readonly supervisorName: string;
  readonly supervisors: iam.Policy;
  /** The functions that write decisions: the ones allowed to publish decision events. */
  readonly deciders: lambda.IFunction[];

  constructor(scope: Construct, id: string, props: CoordinatorStackProps) {
    super(scope, id, props);
    const { txTable, lockTable, participantQueues, replyQueues, replyDeadLetterQueue, eventBus } = props.data;
    this.functions = new Functions(this, 'Functions', { config: props.config, txTable, lockTable, participantQueues, replyQueues, replyDeadLetterQueue, ...(eventBus ? { eventBus } : {}) });
    const { api, supervise, reply } = this.functions;
    this.workflow = new Workflow(this, 'Workflow', {
      supervise,
      logGroupName: `/aws/vendedlogs/states/${props.config.prefix}-supervisor`,
      logRetentionDays: props.config.logRetentionDays,
      tracing: props.config.tracing,
    });
    const { stateMachine } = this.workflow;

    // Whoever may find a group without a supervisor starts one: api (a transaction's start), supervise
    // (parking, continuing as a new execution) and the sweeper. The state machine references
    // supervise, so its ARN goes into a separate policy and a built name (no dependency cycle).
    api.addEnvironment('STATE_MACHINE_ARN', stateMachine.stateMachineArn);
    const smName = `${props.config.prefix}-supervisor`;
    (stateMachine.node.defaultChild as import('aws-cdk-lib/aws-stepfunctions').CfnStateMachine).stateMachineName = smName;
    const smArn = Stack.of(this).formatArn({ service: 'states', resource: 'stateMachine', resourceName: smName, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    supervise.addEnvironment('STATE_MACHINE_ARN', smArn);
    reply.addEnvironment('STATE_MACHINE_ARN', smArn);
    const execArn = Stack.of(this).formatArn({ service: 'states', resource: 'execution', resourceName: `${smName}:*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    this.supervisorName = smName;
    this.supervisors = new iam.Policy(this, 'Supervisors', {
      // Not reply: votes and acknowledgements never start a supervisor (test/cdk/permissions.test.ts).
      roles: [api.role, supervise.role].filter((r): r is iam.IRole => r !== undefined),
      statements: [
        new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [smArn] }),
        new iam.PolicyStatement({ actions: ['states:DescribeExecution'], resources: [execArn] }),
      ],
    });

    this.api = new Api(this, 'Api', { handler: api, waiter: this.functions.waiter, config: props.config });
    this.recovery = new Recovery(this, 'Recovery', {
      functions: this.functions,
      txTable,
      stateMachineArn: smArn,
      executionArns: execArn,
      localRateSeconds: props.config.sweeperLocalRateSeconds,
    });
    this.deadlocks = new Deadlocks(this, 'Deadlocks', { functions: this.functions, txTable, lockTable, participantQueueArns: Object.values(participantQueues).map((q) => q.queueArn) });
    // Decision events come from whoever decides, finishes or marks in doubt: api (abort requests, lock
    // takeovers), reply (votes, acknowledgements), supervise (deadlines, in doubt), detector (victims).
    this.deciders = [api, reply, supervise, this.deadlocks.detector];
    if (eventBus) for (const fn of this.deciders) eventBus.grantPutEventsTo(fn);

    new CfnOutput(this, 'ApiUrl', { value: this.api.restApi.url });
    new CfnOutput(this, 'TxTableName', { value: txTable.tableName });
    new CfnOutput(this, 'LockTableName', { value: lockTable.tableName });
    for (const [service, queue] of Object.entries(participantQueues)) {
      new CfnOutput(this, `${pascalCase(service)}QueueUrl`, { value: queue.queueUrl });
    }
    // Each participant's reply queue (service -> URL): where its votes and acknowledgements go.
    new CfnOutput(this, 'ReplyQueueUrls', { value: Stack.of(this).toJsonString(Object.fromEntries(Object.entries(replyQueues).map(([s, q]) => [s, q.queueUrl]))) });
    new CfnOutput(this, 'StateMachineArn', { value: stateMachine.stateMachineArn });
    // Where decision events arrive (docs/events.md): subscribers' rules name it.
    if (eventBus) new CfnOutput(this, 'EventBusName', { value: eventBus.eventBusName });

    // Last, so every function defined above gets its error alarm (a template test checks it).
    this.observability = new Observability(this, 'Observability', {
      config: props.config,
      functions: functionsIn(this),
      stateMachine,
      restApi: this.api.restApi,
      accessLogs: this.api.accessLogs,
      sweeper: this.recovery.sweeper,
      tables: { log: txTable, locks: lockTable },
      queues: {
        ...Object.fromEntries(Object.entries(participantQueues).map(([s, q]) => [`${s}-requests`, q])),
        ...Object.fromEntries(Object.entries(replyQueues).map(([s, q]) => [`${s}-replies`, q])),
      },
    });
    acknowledgeCoordinatorFindings(this);
  }
}
