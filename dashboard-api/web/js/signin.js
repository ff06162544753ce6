// The sign-in form the police and dispatcher views show when the session's
// role cannot open them: paste a bearer token, and the views re-render for the
// new role. The command that prints a token is shown beside it, because a
// person running the demo has no other way to get one.

import { signIn } from './api.js';
import { t } from './i18n.js';
import { el } from './ui.js';

let lastRefusal = null;
document.addEventListener('egret:auth-refused', (event) => {
  lastRefusal = event.detail;
});

/** A form asking for a token; `needKey` says which role the view needs, `role` goes into the command shown. */
export function signInForm(needKey, role) {
  const error = el('p', { class: 'error', role: 'alert' }, lastRefusal ?? '');
  const input = el('textarea', { name: 'token', rows: 3, spellcheck: false, autocomplete: 'off', placeholder: t('auth.paste'), 'aria-label': t('auth.paste') });
  const form = el(
    'form',
    { class: 'signin card', dataset: { needs: role } },
    el('h2', {}, t('auth.signIn')),
    el('p', {}, t(needKey)),
    input,
    el('button', { type: 'submit', class: 'primary' }, t('auth.signIn')),
    el('p', { class: 'hint' }, t('auth.how', { cmd: '' }), el('code', {}, `egret token --role ${role}`)),
    error,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    try {
      lastRefusal = null;
      signIn(input.value);
    } catch (e) {
      error.textContent = e.message;
    }
  });
  return form;
}
