// A post-hook on GetEvents, in TypeScript: drops the events of the types
// params.hidden lists. The shape is the API Maker seed's (import the types,
// an async main, module.exports = main), with ctx in place of g.
// `hookctl types -o scripts/typescript` writes the declarations an editor needs.
import * as T from 'types';

interface Params {
    hidden?: string[];
}

async function main(ctx: T.events.v1.EventService.GetEventsPost) {
    const hidden = (ctx.params as Params).hidden ?? [];
    const events = ctx.response.events ?? [];
    ctx.response.events = events.filter((e) => !hidden.includes(e.eventType ?? ""));
    ctx.log.info("events returned", { user: ctx.request.userId, kept: ctx.response.events.length, of: events.length });
}

module.exports = main;
