// CLI entry (`cdk synth|deploy`): the CLI hands cdk.json's context and any `-c` overrides to the App.
import { buildApp } from './build';

buildApp().app.synth();
