/**
 * Worker entries bundled to plain JavaScript once, at start.
 *
 * Under Node, a worker thread loads TypeScript through tsx, and tsx sets itself up again in every
 * new thread (its module-loader thread and esbuild): most of a second per worker on a busy 2-core
 * machine, against about a tenth of that for a plain JavaScript worker. Sessions start, restart
 * and refill the warm pool with workers, so the server bundles each worker entry with esbuild when
 * it starts (tens of milliseconds) and spawnWorker() starts the bundle instead. Packages stay
 * external (loaded from node_modules as usual). `import.meta.url` in the project's own files is
 * replaced by each file's own URL, so paths computed from it (models, nested workers) are what
 * they are unbundled. Deno runs TypeScript natively and needs none of this.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The expression the plugin replaces, spelled so that this file (itself bundled into the workers,
 * through rpc.ts) does not contain it where it must stay text.
 */
const META_URL = ['import', 'meta', 'url'].join('.');

/** Entry URL (href) → bundle path, for spawnWorker in this thread and, through workerData, in the workers. */
export const workerBundles: Record<string, string> = {};

const OUT_DIR = fileURLToPath(new URL('../../.cache/workers/', import.meta.url));

export async function bundleWorkers(entries: URL[]): Promise<void> {
  if ('Deno' in globalThis) return;
  const esbuild = await import('esbuild');
  const paths = entries.map((e) => fileURLToPath(e));
  // One build for every entry, split into chunks: what a worker imports dynamically (a renderer,
  // the face models, a codec backend) stays a chunk of its own, loaded when first used, with the
  // packages it needs (onnxruntime, sharp); a single file would load them all at start.
  const result = await esbuild.build({
    entryPoints: paths,
    outdir: OUT_DIR,
    write: false,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    // Named by content: servers of one checkout starting together write the same files.
    entryNames: '[dir]/[name]-[hash]',
    chunkNames: 'chunks/[name]-[hash]',
    metafile: true,
    logLevel: 'silent',
    // ES modules that call require() on node builtins need a require of their own.
    banner: { js: `import { createRequire as __xplRequire } from 'node:module'; const require = __xplRequire(${META_URL});` },
    plugins: [
      {
        name: 'own-import-meta-url',
        setup(build) {
          build.onLoad({ filter: /\.ts$/ }, async (args) => {
            if (args.path.includes('/node_modules/')) return undefined;
            const source = await readFile(args.path, 'utf8');
            return { contents: source.replaceAll(META_URL, JSON.stringify(pathToFileURL(args.path).href)), loader: 'ts' };
          });
        },
      },
    ],
  });
  for (const file of result.outputFiles) {
    await mkdir(dirname(file.path), { recursive: true });
    // Written whole or not at all (rename is atomic): another server may be loading it.
    const tmp = `${file.path}.${process.pid}.tmp`;
    await writeFile(tmp, file.contents);
    await rename(tmp, file.path);
  }
  for (const [out, meta] of Object.entries(result.metafile!.outputs)) {
    if (!meta.entryPoint) continue;
    const entry = entries[paths.findIndex((p) => p.endsWith(meta.entryPoint!))];
    if (entry) workerBundles[entry.href] = join(process.cwd(), out);
  }
}
