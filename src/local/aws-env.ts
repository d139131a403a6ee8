// How every SDK client in this process finds the embedded stack: the SDK's own endpoint variables.
export const LOCAL_REGION = 'us-east-1';
export const LOCAL_ACCOUNT = '000000000000';

export interface LocalEndpoints {
  dynamodb: string;
  sqs: string;
  stepfunctions: string;
}

/** Point the AWS SDK v3 at local endpoints with dummy credentials (before any client is created). */
export function useLocalAws(endpoints: LocalEndpoints): void {
  process.env.AWS_REGION = LOCAL_REGION;
  process.env.AWS_DEFAULT_REGION = LOCAL_REGION;
  process.env.AWS_ACCESS_KEY_ID = 'local';
  process.env.AWS_SECRET_ACCESS_KEY = 'local';
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  process.env.AWS_ENDPOINT_URL_DYNAMODB = endpoints.dynamodb;
  process.env.AWS_ENDPOINT_URL_SQS = endpoints.sqs;
  process.env.AWS_ENDPOINT_URL_SFN = endpoints.stepfunctions;
}
