// One worker process of `npm run sim -- --workers N`: runs its share of the seeds (every N-th) and
// prints its totals as one JSON line. The parent adds the workers' totals up.
import { runSeeds, type SeedsOptions } from './run';

const options = JSON.parse(process.argv[2] ?? '{}') as SeedsOptions;
const result = await runSeeds(options);
process.stdout.write(`${JSON.stringify(result)}\n`);
