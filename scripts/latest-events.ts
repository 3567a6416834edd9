// The API Maker seed's post-hook example ("Global object 'g'"), with its
// missing closing braces added and its fields adapted to GetEvents: where
// the seed returns what g.sys.db.getAll reads from a collection, this hook
// returns the user's latest events. Its style is apimaker (see hooks.yaml):
// main gets g, and the value it returns ends the chain as the call's
// response.
import * as T from 'types';
async function main(g: T.IAMGlobal) {
    return await Promise.resolve({
        events: (g.res.output.events ?? []).slice(-g.params.limit),
    });
}
module.exports = main;
