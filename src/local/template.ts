// CloudFormation templates as the embedded stack reads them: resources, and the intrinsic
// functions the CDK emits, resolved against what the local provisioner created.

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
  DependsOn?: string | string[];
}

export interface CfnTemplate {
  Resources?: Record<string, CfnResource>;
  Outputs?: Record<string, { Value: unknown; Export?: { Name: unknown } }>;
  Parameters?: Record<string, { Type: string; Default?: unknown }>;
}

/** What a created resource answers to `Ref` and `Fn::GetAtt`. */
export interface Provisioned {
  ref: string;
  attributes: Record<string, string>;
}

export class Resolver {
  private readonly resources = new Map<string, Provisioned>();

  constructor(
    private readonly pseudo: { region: string; accountId: string; stackName: string },
    private readonly exports: Map<string, string>,
    private readonly parameters: Record<string, string> = {},
  ) {}

  set(logicalId: string, provisioned: Provisioned): void {
    this.resources.set(logicalId, provisioned);
  }

  has(logicalId: string): boolean {
    return this.resources.has(logicalId);
  }

  /** Resolve every intrinsic in `value`; throws naming the reference when one cannot resolve. */
  resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((v) => this.resolve(v));
    if (value === null || typeof value !== 'object') return value;
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    if (keys.length === 1) {
      const [fn] = keys as [string];
      const arg = obj[fn];
      switch (fn) {
        case 'Ref':
          return this.ref(arg as string);
        case 'Fn::GetAtt':
          return this.getAtt(arg as string | [string, string]);
        case 'Fn::Join': {
          const [sep, parts] = arg as [string, unknown[]];
          return (this.resolve(parts) as unknown[]).map(String).join(sep);
        }
        case 'Fn::Sub':
          return this.sub(arg as string | [string, Record<string, unknown>]);
        case 'Fn::ImportValue': {
          const name = String(this.resolve(arg));
          const exported = this.exports.get(name);
          if (exported === undefined) throw new Error(`Fn::ImportValue ${name}: no stack exports it`);
          return exported;
        }
        case 'Fn::Select': {
          const [index, list] = arg as [unknown, unknown];
          return (this.resolve(list) as unknown[])[Number(this.resolve(index))];
        }
        case 'Fn::Split': {
          const [sep, str] = arg as [string, unknown];
          return String(this.resolve(str)).split(sep);
        }
        case 'Fn::If':
        case 'Fn::Equals':
        case 'Fn::FindInMap':
        case 'Fn::GetAZs':
        case 'Fn::Base64':
        case 'Fn::Cidr':
          throw new Error(`the embedded stack does not implement ${fn}`);
      }
    }
    return Object.fromEntries(keys.map((k) => [k, this.resolve(obj[k])]));
  }

  private ref(name: string): string {
    switch (name) {
      case 'AWS::Region':
        return this.pseudo.region;
      case 'AWS::AccountId':
        return this.pseudo.accountId;
      case 'AWS::Partition':
        return 'aws';
      case 'AWS::URLSuffix':
        return 'amazonaws.com';
      case 'AWS::StackName':
        return this.pseudo.stackName;
      case 'AWS::NoValue':
        return '';
    }
    const param = this.parameters[name];
    if (param !== undefined) return param;
    const res = this.resources.get(name);
    if (!res) throw new Error(`Ref ${name}: not provisioned (yet)`);
    return res.ref;
  }

  private getAtt(arg: string | [string, string]): string {
    const [id, attr] = typeof arg === 'string' ? (arg.split('.', 2) as [string, string]) : arg;
    const res = this.resources.get(id);
    if (!res) throw new Error(`Fn::GetAtt ${id}.${attr}: not provisioned (yet)`);
    const value = res.attributes[attr];
    if (value === undefined) throw new Error(`Fn::GetAtt ${id}.${attr}: the embedded stack has no such attribute`);
    return value;
  }

  private sub(arg: string | [string, Record<string, unknown>]): string {
    const [text, vars] = typeof arg === 'string' ? [arg, {}] : arg;
    return text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      if (name in vars) return String(this.resolve(vars[name]));
      return name.includes('.') ? this.getAtt(name) : this.ref(name);
    });
  }
}

/** Logical ids that `value` references through Ref, GetAtt or Sub (for ordering the work). */
export function referencedIds(value: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    value.forEach((v) => referencedIds(v, out));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (k === 'Ref' && typeof v === 'string' && !v.startsWith('AWS::')) out.add(v);
      else if (k === 'Fn::GetAtt') out.add(typeof v === 'string' ? v.split('.')[0]! : (v as string[])[0]!);
      else if (k === 'Fn::Sub') {
        const text = typeof v === 'string' ? v : (v as [string])[0];
        for (const m of text.matchAll(/\$\{([^}.]+)[^}]*\}/g)) if (!m[1]!.startsWith('AWS::')) out.add(m[1]!);
        if (Array.isArray(v)) referencedIds(v[1], out);
      } else referencedIds(v, out);
    }
  }
  return out;
}

/** Resources in an order where everything a resource references comes before it. */
export function dependencyOrder(resources: Record<string, CfnResource>): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (id: string) => {
    if (state.get(id) === 'done' || !(id in resources)) return;
    if (state.get(id) === 'visiting') throw new Error(`circular reference through ${id}`);
    state.set(id, 'visiting');
    const res = resources[id]!;
    const deps = referencedIds(res.Properties);
    for (const d of [res.DependsOn ?? []].flat()) deps.add(d);
    for (const d of deps) visit(d);
    state.set(id, 'done');
    order.push(id);
  };
  Object.keys(resources).sort().forEach(visit);
  return order;
}
