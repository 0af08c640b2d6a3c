import t from 'tap';
t.test('x', async (t) => { t.comment(JSON.stringify(process.execArgv)); t.comment(process.env.NODE_OPTIONS ?? 'none'); t.pass(); });
