// Every API the helper reads: each module knows one API's answer shapes, and nothing else does.
import {chat} from './chat.js';

export const providers = [chat];
