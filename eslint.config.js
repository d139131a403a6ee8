// Lint what the type checker cannot: promises nobody awaits, and focused or skipped tests.
import tseslint from 'typescript-eslint';
import vitest from '@vitest/eslint-plugin';

export default tseslint.config(
  { ignores: ['node_modules/**', 'cdk.out/**', '.dtc/**', 'coverage/**'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser, parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  {
    // Time, ids, randomness and timers come in as ports (src/core/ports.ts), so a seeded simulation
    // replays a run exactly; their real defaults live in src/aws/system.ts alone. Everything but the
    // adapters that provide the clock, ids and scheduling (src/aws, src/local) is held to it.
    files: ['src/**/*.ts', 'lambdas/**/*.ts'],
    ignores: ['src/aws/**', 'src/local/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'take a Clock (src/core/ports.ts); the default is systemClock in src/aws/system.ts' },
        { object: 'Math', property: 'random', message: 'take a RandomSource; the default is systemRandom in src/aws/system.ts' },
        { object: 'crypto', property: 'randomUUID', message: 'take an IdSource; the default is systemIds in src/aws/system.ts' },
        { object: 'performance', property: 'now', message: 'take a Clock' },
      ],
      'no-restricted-globals': [
        'error',
        ...['setTimeout', 'setInterval', 'setImmediate'].map((name) => ({ name, message: 'take a Sleep (src/core/ports.ts); the default is systemSleep in src/aws/system.ts' })),
      ],
      'no-restricted-imports': [
        'error',
        { paths: ['node:crypto', 'crypto'].map((name) => ({ name, importNames: ['randomUUID', 'randomInt', 'randomBytes'], message: 'take an IdSource or RandomSource' })).concat(
          ['node:timers', 'timers', 'node:timers/promises', 'timers/promises'].map((name) => ({ name, message: 'take a Sleep' })),
        ) },
      ],
      'no-restricted-syntax': ['error', { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'new Date() reads the clock: take a Clock' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    plugins: { vitest },
    rules: { 'vitest/no-focused-tests': 'error', 'vitest/no-disabled-tests': 'error' },
  },
);
