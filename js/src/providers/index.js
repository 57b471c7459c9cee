// Every API the helper reads. Each module knows one API's answer shapes, and nothing else does:
// {name, is, body, stream}, as ../answer.js describes.
import {anthropic} from './anthropic.js';
import {chat} from './chat.js';
import {gemini} from './gemini.js';
import {responses} from './responses.js';

export const providers = [chat, responses, anthropic, gemini];
