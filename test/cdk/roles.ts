// The functions of a synthesized coordinator stack and what their roles are granted, for the tests
// that check least privilege (hardening, permissions, template).
import type { Template } from 'aws-cdk-lib/assertions';

type Json = Record<string, any>;

/** Each function: its logical id, its source entry (`dtc:entry`) and its role's logical id. */
export function functionRoles(template: Template): { id: string; entry: string; role: string }[] {
  return Object.entries(template.findResources('AWS::Lambda::Function')).map(([id, fn]) => ({
    id,
    entry: fn.Metadata['dtc:entry'] as string,
    role: fn.Properties.Role['Fn::GetAtt'][0] as string,
  }));
}

/** The statements of every policy attached to the role. */
export function roleStatements(template: Template, roleId: string): Json[] {
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((p) => (p.Properties.Roles as Json[]).some((r) => r.Ref === roleId))
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Json[]);
}

/** The IAM statements of a function's role (by its source entry). */
export function statementsOf(template: Template, entry: string): Json[] {
  const fn = functionRoles(template).find((f) => f.entry === entry);
  if (!fn) throw new Error(`no function with entry ${entry}`);
  return roleStatements(template, fn.role);
}
