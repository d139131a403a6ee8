// How every SDK client in this process finds the embedded stack: the SDK's own endpoint variables.
export const LOCAL_REGION = 'us-east-1';
export const LOCAL_ACCOUNT = '000000000000';
/** The dummy credentials of everything local; the gateway checks signatures against them (DTC_REQUIRE_AUTH=1). */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;

export interface LocalEndpoints {
  dynamodb: string;
  sqs: string;
  stepfunctions: string;
  /** EventBridge PutEvents (src/local/events.ts). */
  events?: string;
}

/** Point the AWS SDK v3 at local endpoints with dummy credentials (before any client is created). */
export function useLocalAws(endpoints: LocalEndpoints): void {
  process.env.AWS_REGION = LOCAL_REGION;
  process.env.AWS_DEFAULT_REGION = LOCAL_REGION;
  process.env.AWS_ACCESS_KEY_ID = LOCAL_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = LOCAL_CREDENTIALS.secretAccessKey;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  process.env.AWS_ENDPOINT_URL_DYNAMODB = endpoints.dynamodb;
  process.env.AWS_ENDPOINT_URL_SQS = endpoints.sqs;
  process.env.AWS_ENDPOINT_URL_SFN = endpoints.stepfunctions;
  if (endpoints.events) process.env.AWS_ENDPOINT_URL_EVENTBRIDGE = endpoints.events;
  // Nothing collects embedded metric format here: keep the handlers' stdout quiet (set it to
  // "false" to see the EMF lines). Tracing needs no switch: it only runs inside Lambda.
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
}
