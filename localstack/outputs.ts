// The outputs file `cdk deploy --outputs-file` writes ({ stack: { output: value } }), read into
// what clients of a deployed coordinator need. Shared by the LocalStack deploy script and the
// end-to-end harness's deployed targets.

export interface DeployedOutputs {
  apiUrl: string;
  txTable: string;
  lockTable?: string;
  /** Participant service -> its reply queue URL (the ReplyQueueUrls output, JSON). */
  replyQueueUrls: Record<string, string>;
  /** Participant service -> its request queue URL. */
  participantQueues: Record<string, string>;
  stateMachineArn: string;
  /** Every stack's outputs, as the file has them. */
  stacks: Record<string, Record<string, string>>;
}

/** `OrderHistory` -> `order-history`: the inverse of the stack's output naming. */
function serviceOfOutputKey(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/** Read a `cdk deploy --outputs-file` document: the stack with an ApiUrl output is the coordinator. */
export function readDeployedOutputs(doc: unknown, file = 'outputs'): DeployedOutputs {
  if (!doc || typeof doc !== 'object') throw new Error(`${file}: not a JSON object of stack -> outputs`);
  const stacks = doc as Record<string, Record<string, string>>;
  const coordinator = Object.values(stacks).find((outputs) => outputs && typeof outputs.ApiUrl === 'string');
  if (!coordinator) throw new Error(`${file}: no stack has an ApiUrl output (stacks: ${Object.keys(stacks).join(', ') || 'none'})`);
  const need = (key: string) => {
    const value = coordinator[key];
    if (typeof value !== 'string' || value === '') throw new Error(`${file}: the coordinator stack has no ${key} output`);
    return value;
  };
  const participantQueues: Record<string, string> = {};
  for (const [key, url] of Object.entries(coordinator)) {
    const m = /^(.+)QueueUrl$/.exec(key);
    if (!m) continue;
    const service = serviceOfOutputKey(m[1]!);
    // The queue is named `<prefix>-<service>-requests`: a check that the key was read back right.
    if (!url.endsWith(`-${service}-requests`)) throw new Error(`${file}: output ${key} (${url}) is not the request queue of '${service}'`);
    participantQueues[service] = url;
  }
  return {
    apiUrl: need('ApiUrl'),
    txTable: need('TxTableName'),
    ...(coordinator.LockTableName ? { lockTable: coordinator.LockTableName } : {}),
    replyQueueUrls: replyQueueUrls(need('ReplyQueueUrls'), file),
    participantQueues,
    stateMachineArn: need('StateMachineArn'),
    stacks,
  };
}

/** The ReplyQueueUrls output: a JSON object of service -> reply queue URL (`<prefix>-<service>-replies`). */
function replyQueueUrls(raw: string, file: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error(`${file}: output ReplyQueueUrls is not JSON: ${raw}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${file}: output ReplyQueueUrls is not an object of service -> URL`);
  const urls: Record<string, string> = {};
  for (const [service, url] of Object.entries(parsed as Record<string, unknown>)) {
    if (typeof url !== 'string' || !url.endsWith(`-${service}-replies`)) throw new Error(`${file}: ReplyQueueUrls.${service} (${String(url)}) is not the reply queue of '${service}'`);
    urls[service] = url;
  }
  return urls;
}
