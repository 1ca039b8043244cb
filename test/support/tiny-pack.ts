/**
 * `npm test` starts this in the background before its lanes. The xportrait-lcm test files share
 * one tiny X-Portrait pack, exported once per machine into the temp dir (about a minute of one
 * core); a test file that waits for it holds one of the shared lane's two slots idle meanwhile.
 * Started here first, the export runs beside the other files instead. Nothing to do when the pack
 * is there; when Python cannot export it, the test files skip and say why.
 */
import { pythonSkipReason, tinyPack } from '../lcm/helpers.ts';

if (!pythonSkipReason()) await tinyPack();
