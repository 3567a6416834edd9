message = data.message; //get the passed in API parameters
hookParms = data.parms; //get the custom hook parameters
bridge.logInfoJson("running from prehook_sendevent_addvalue hookparms: ", hookParms);
Object.assign(message.eventData, hookParms.extradata); //add extra json data value to eventdata that was passed in
bridge.logInfoJson("running from prehook_sendevent_adevalue message: ", message);
var retval = {}; //prepare the return object
retval.status = 200;
retval.messageOverride = message;
