// The API Maker seed's utility class example ("Use Utility classes"), with
// its missing closing braces added and its fields adapted to SendEvent:
// where the seed returns addition.add(g.req.body.x, g.req.body.y), this
// pre-hook adds two numbers of the event's data with the same util and
// stores the sum in it. Its style is apimaker (see hooks.yaml).
import * as T from 'types';
import * as addition from 'utils/Addition';
async function main(g: T.IAMGlobal) {
    const data = g.req.body.eventData;
    if (data && typeof data.x === "number" && typeof data.y === "number") {
        data.sum = addition.add(data.x, data.y);
    }
}
module.exports = main;
