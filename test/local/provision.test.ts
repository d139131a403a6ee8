import { describe, expect, it } from 'vitest';
import { localPeriodSeconds, unsupportedResources } from '../../src/local/provision';
import { dependencyOrder, Resolver } from '../../src/local/template';

describe('unsupportedResources', () => {
  it('names every resource the embedded stack cannot run', () => {
    const problems = unsupportedResources([
      {
        stackName: 'S',
        template: {
          Resources: {
            Stream: { Type: 'AWS::Kinesis::Stream' },
            // Accepted, not emulated: alarm notifications.
            Topic: { Type: 'AWS::SNS::Topic' },
            Fn: { Type: 'AWS::Lambda::Function', Properties: {} },
            Method: { Type: 'AWS::ApiGateway::Method', Properties: { Integration: { Type: 'HTTP_PROXY' } } },
            Table: { Type: 'AWS::DynamoDB::Table', Properties: {} },
            Role: { Type: 'AWS::IAM::Role', Properties: {} },
          },
        },
      },
    ]);
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^S\/Stream: resource type AWS::Kinesis::Stream is not supported/);
    expect(problems[1]).toMatch(/^S\/Fn: .*dtc:entry/);
    expect(problems[2]).toMatch(/^S\/Method: API integration type HTTP_PROXY/);
  });

  it('accepts an event bus and rules on its events (with an EventPattern), not a rule with neither pattern nor schedule', () => {
    const problems = unsupportedResources([
      {
        stackName: 'S',
        template: {
          Resources: {
            Bus: { Type: 'AWS::Events::EventBus', Properties: { Name: 'dtc-events' } },
            OnDecided: { Type: 'AWS::Events::Rule', Properties: { EventBusName: { Ref: 'Bus' }, EventPattern: { source: ['dtc'] }, Targets: [{ Arn: 'arn:aws:sqs:us-east-1:0:q', Id: 'q' }] } },
            Odd: { Type: 'AWS::Events::Rule', Properties: { Targets: [] } },
          },
        },
      },
    ]);
    expect(problems).toEqual(['S/Odd: only scheduled EventBridge rules and rules with an EventPattern are supported', 'S/Odd: only Lambda targets are supported']);
  });
});

describe('Resolver', () => {
  it('resolves Ref, GetAtt, Join, Sub, ImportValue, Select and Split', () => {
    const r = new Resolver({ region: 'us-east-1', accountId: '000000000000', stackName: 'S' }, new Map([['Other:Url', 'http://q']]));
    r.set('Table', { ref: 'tbl', attributes: { Arn: 'arn:tbl' } });
    expect(r.resolve({ Ref: 'Table' })).toBe('tbl');
    expect(r.resolve({ 'Fn::GetAtt': ['Table', 'Arn'] })).toBe('arn:tbl');
    expect(r.resolve({ 'Fn::Join': ['-', ['a', { Ref: 'AWS::Region' }, { Ref: 'Table' }]] })).toBe('a-us-east-1-tbl');
    expect(r.resolve({ 'Fn::Sub': '${AWS::AccountId}/${Table}/${Table.Arn}' })).toBe('000000000000/tbl/arn:tbl');
    expect(r.resolve({ 'Fn::ImportValue': 'Other:Url' })).toBe('http://q');
    expect(r.resolve({ 'Fn::Select': [1, { 'Fn::Split': [',', 'x,y,z'] }] })).toBe('y');
    expect(r.resolve({ nested: [{ Ref: 'Table' }] })).toEqual({ nested: ['tbl'] });
  });

  it('fails loudly, naming the reference, when something cannot resolve', () => {
    const r = new Resolver({ region: 'us-east-1', accountId: '0', stackName: 'S' }, new Map());
    expect(() => r.resolve({ Ref: 'Missing' })).toThrow(/Ref Missing/);
    expect(() => r.resolve({ 'Fn::ImportValue': 'Nope' })).toThrow(/Nope/);
    expect(() => r.resolve({ 'Fn::If': ['c', 1, 2] })).toThrow(/Fn::If/);
  });
});

describe('dependencyOrder', () => {
  it('puts referenced resources first and detects cycles', () => {
    const order = dependencyOrder({
      Queue: { Type: 'AWS::SQS::Queue', Properties: { RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': ['Dlq', 'Arn'] } } } },
      Dlq: { Type: 'AWS::SQS::Queue' },
      Fn: { Type: 'AWS::Lambda::Function', Properties: { Environment: { Variables: { Q: { Ref: 'Queue' } } } }, DependsOn: ['Role'] },
      Role: { Type: 'AWS::IAM::Role' },
    });
    expect(order.indexOf('Dlq')).toBeLessThan(order.indexOf('Queue'));
    expect(order.indexOf('Queue')).toBeLessThan(order.indexOf('Fn'));
    expect(order.indexOf('Role')).toBeLessThan(order.indexOf('Fn'));
    expect(() => dependencyOrder({ A: { Type: 'X', Properties: { r: { Ref: 'B' } } }, B: { Type: 'X', Properties: { r: { Ref: 'A' } } } })).toThrow(/circular/);
  });
});

describe('localPeriodSeconds', () => {
  it('takes the local override, else the rate', () => {
    expect(localPeriodSeconds({ Type: 'AWS::Events::Rule', Metadata: { 'dtc:localRateSeconds': 2 }, Properties: { ScheduleExpression: 'rate(1 minute)' } })).toBe(2);
    expect(localPeriodSeconds({ Type: 'AWS::Events::Rule', Properties: { ScheduleExpression: 'rate(5 minutes)' } })).toBe(300);
    expect(() => localPeriodSeconds({ Type: 'AWS::Events::Rule', Properties: { ScheduleExpression: 'cron(0 * * * ? *)' } })).toThrow(/rate/);
  });
});
