// cdk-nag's AWS Solutions rules over the whole app, as deployed: no finding may stand unless it is
// acknowledged, and every acknowledgment says why. cdk-nag 3 runs as a policy-validation plugin;
// `validateScope` is its direct entry point (the CDK does not hand plugins the construct tree yet).
import { App, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp, loadCdkContext } from '../../cdk/build';

function findings(app: App): string[] {
  const report = new AwsSolutionsChecks().validateScope(app);
  return report.violations.flatMap((v) => v.violatingResources.map((r) => `${v.severity} ${v.ruleName} at ${r.constructPath}: ${v.description}`));
}

function acknowledgments(root: IConstruct): { path: string; id: string; reason: string }[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({ path: c.node.path, id, reason }))),
  );
}

describe('cdk-nag AwsSolutionsChecks', () => {
  let app: App;
  beforeAll(() => {
    app = buildApp({ bundle: false }).app;
  });

  it('finds nothing unacknowledged in the app as cdk.json configures it', () => {
    expect(findings(app)).toEqual([]);
  });

  it('finds nothing either with tracing off, the account logging role left alone and alarms notifying a topic', () => {
    const app = buildApp({
      bundle: false,
      context: loadCdkContext({ tracing: false, apiGatewayCloudWatchRole: false, alarmTopicArn: 'arn:aws:sns:us-east-1:123456789012:oncall' }),
    }).app;
    expect(findings(app)).toEqual([]);
  });

  it('finds nothing either with a principal per participant (reply queues only they may send on)', () => {
    const app = buildApp({
      bundle: false,
      context: loadCdkContext({ participants: { inventory: 'arn:aws:iam::111111111111:role/inventory', payment: 'arn:aws:iam::222222222222:role/payment' } }),
    }).app;
    expect(findings(app)).toEqual([]);
  });

  it('has a reason for every acknowledged rule', () => {
    const acks = acknowledgments(app);
    expect(acks.length).toBeGreaterThan(0);
    for (const ack of acks) {
      expect(ack.id).toMatch(/^(Annotation::)?AwsSolutions-[A-Z]+\d+(\[.+\])?$/);
      // A sentence, not a placeholder: what makes the finding acceptable here.
      expect(ack.reason.split(/\s+/).length, `${ack.path} ${ack.id}`).toBeGreaterThanOrEqual(8);
    }
  });

  it('still catches a violation (the check is live, not vacuous)', () => {
    // Last: it changes the app the other tests checked.
    const api = app.node.findAll().find((c) => c.node.path === 'DtcCoordinator/Functions/api') as unknown as { addToRolePolicy(s: iam.PolicyStatement): void };
    api.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:*'], resources: ['*'] }));
    expect(findings(app).some((f) => f.includes('AwsSolutions-IAM5[Action::dynamodb:*]'))).toBe(true);
  });
});
