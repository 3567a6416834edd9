// Rejects events sent to the user named in params.blocked with 403
// (PERMISSION_DENIED), and events without a type with 400.
module.exports = function main(ctx) {
  if (ctx.request.toUserId === ctx.params.blocked) {
    return { status: 403, message: "events to " + ctx.request.toUserId + " are not allowed" };
  }
  if (!ctx.request.eventType) {
    return { status: "INVALID_ARGUMENT", message: "eventType is required" };
  }
};
