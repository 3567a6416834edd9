// A post-hook: prefixes the event id the handler returned, and logs it.
module.exports = async function main(ctx) {
  ctx.response.eventId = (ctx.params.prefix || "evt-") + ctx.response.eventId;
  ctx.log.info("event stored", { to: ctx.request.toUserId, id: ctx.response.eventId });
};
