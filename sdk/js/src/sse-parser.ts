// A text/event-stream parser that follows the HTML standard's EventSource processing model:
// lines end with CRLF, LF or CR; a line starting with ':' is a comment; a field's value loses
// one leading space; `data` lines are joined with LF; `id` values containing NUL are ignored;
// `retry` takes digits only; an empty line dispatches. Unlike EventSource it also reports
// blocks that carry only an `id` field (herald sends those to pin the resume cursor).

export interface SSEBlock {
  /** The event type: the `event` field, or 'message'. */
  type: string;
  /** The data lines joined with LF, or null when the block had no data field. */
  data: string | null;
  /** The `id` field of this block, when it had one. */
  id?: string;
}

export class SSEParser {
  private decoder = new TextDecoder('utf-8');
  private line = '';
  private afterCR = false;
  private eventType = '';
  private dataLines: string[] | null = null;
  private blockId: string | undefined;
  /** The stream's last event id (what EventSource sends as Last-Event-ID). */
  lastEventId = '';

  constructor(
    private readonly onBlock: (block: SSEBlock) => void,
    private readonly onRetry: (ms: number) => void = () => {},
  ) {}

  /** Feeds bytes (or already decoded text). */
  feed(chunk: Uint8Array | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10 /* LF */) {
        if (this.afterCR) {
          // the LF of a CRLF whose CR ended the previous line
          this.afterCR = false;
          start = i + 1;
          continue;
        }
        this.line += text.slice(start, i);
        this.processLine();
        start = i + 1;
      } else if (c === 13 /* CR */) {
        this.line += text.slice(start, i);
        this.processLine();
        this.afterCR = true;
        start = i + 1;
        continue;
      }
      this.afterCR = false;
    }
    this.line += text.slice(start);
  }

  private processLine(): void {
    const line = this.line;
    this.line = '';
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) return; // comment
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        (this.dataLines ??= []).push(value);
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.lastEventId = value;
          this.blockId = value;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.onRetry(parseInt(value, 10));
        break;
      default:
      // unknown fields are ignored
    }
  }

  private dispatch(): void {
    const data = this.dataLines;
    const id = this.blockId;
    const type = this.eventType || 'message';
    this.dataLines = null;
    this.blockId = undefined;
    this.eventType = '';
    if (data === null && id === undefined) return;
    const block: SSEBlock = { type, data: data === null ? null : data.join('\n') };
    if (id !== undefined) block.id = id;
    this.onBlock(block);
  }
}
