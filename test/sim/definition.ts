// The supervisors' state machine definition, as cdk/workflow.ts synthesizes it
// (src/memory/definition.ts), cached on disk: a synthesis loads the CDK library and takes seconds,
// which every simulation process (a worker, a test fork) would pay. The cache key covers what the
// definition is built from: cdk/, src/memory/definition.ts and the CDK library's version.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JsonObject } from '../../src/memory/asl';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface SupervisorDefinition {
  /** The function the definition's Supervise task invokes (WORKFLOW_SUPERVISE_ARN). */
  superviseArn: string;
  definition: JsonObject;
}

let loaded: SupervisorDefinition | undefined;

/** A fresh copy each call; synthesized at most once per cache key, loaded once per process. */
export async function supervisorDefinition(): Promise<SupervisorDefinition> {
  loaded ??= await load();
  return structuredClone(loaded);
}

async function load(): Promise<SupervisorDefinition> {
  const file = path.join(tmpdir(), 'dtc-sim-definition', `${cacheKey()}.json`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SupervisorDefinition;
  } catch {
    // Not cached yet (or a half-written file from a killed run): synthesize.
  }
  const { WORKFLOW_SUPERVISE_ARN, workflowDefinition } = await import('../../src/memory/definition');
  const cached: SupervisorDefinition = { superviseArn: WORKFLOW_SUPERVISE_ARN, definition: workflowDefinition() };
  mkdirSync(path.dirname(file), { recursive: true });
  // Write then rename, so a process starting in parallel never reads half a file.
  const partial = `${file}.${process.pid}.tmp`;
  writeFileSync(partial, JSON.stringify(cached));
  renameSync(partial, file);
  return cached;
}

function cacheKey(): string {
  const hash = createHash('sha256');
  hash.update(readFileSync(path.join(ROOT, 'node_modules/aws-cdk-lib/package.json')));
  const files = [
    path.join(ROOT, 'src/memory/definition.ts'),
    ...readdirSync(path.join(ROOT, 'cdk'), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.join(e.parentPath, e.name)),
  ].sort();
  for (const file of files) {
    hash.update(path.relative(ROOT, file));
    hash.update(readFileSync(file));
  }
  return hash.digest('hex').slice(0, 24);
}
