/** Login, a restricted session's one task, or the console: the layout and the page for the path. */
import { useEffect, type JSX } from 'react';
import { useAuth } from './auth.js';
import { Layout } from './components/Layout.js';
import { Notice } from './components/Notice.js';
import { Alerts } from './pages/Alerts.js';
import { Audit } from './pages/Audit.js';
import { Compliance } from './pages/Compliance.js';
import { Images } from './pages/Images.js';
import { Login } from './pages/Login.js';
import { Networks } from './pages/Networks.js';
import { Overview } from './pages/Overview.js';
import { Quotas } from './pages/Quotas.js';
import { Restricted } from './pages/Restricted.js';
import { Roles } from './pages/Roles.js';
import { SecurityGroups } from './pages/SecurityGroups.js';
import { Tenants } from './pages/Tenants.js';
import { Tokens } from './pages/Tokens.js';
import { Users } from './pages/Users.js';
import { VmCreate } from './pages/VmCreate.js';
import { VmDetail } from './pages/VmDetail.js';
import { Vms } from './pages/Vms.js';
import { usePath } from './router.js';

function Page({ path }: { path: string }) {
  if (path === '/') return <Overview />;
  if (path === '/vms') return <Vms />;
  if (path === '/vms/new') return <VmCreate />;
  const vm = /^\/vms\/([a-z0-9-]+)$/.exec(path);
  if (vm) return <VmDetail vmRef={vm[1]!} />;
  const pages: Record<string, () => JSX.Element> = {
    '/images': Images,
    '/networks': Networks,
    '/security-groups': SecurityGroups,
    '/tenants': Tenants,
    '/users': Users,
    '/roles': Roles,
    '/tokens': Tokens,
    '/quotas': Quotas,
    '/audit': Audit,
    '/alerts': Alerts,
    '/compliance': Compliance,
  };
  const Found = pages[path];
  if (Found) return <Found />;
  return (
    <>
      <h1>Not found</h1>
      <p>There is no page at {path}.</p>
    </>
  );
}

export function App() {
  const auth = useAuth();
  const path = usePath();
  useEffect(() => {
    document.title = `Rampart — ${path === '/' ? 'Overview' : path.slice(1).split('/')[0]}`;
    document.getElementById('main')?.focus({ preventScroll: true });
  }, [path]);
  if (!auth.session) return <Login />;
  if (auth.whoami?.restriction) return <Restricted />;
  if (!auth.whoami)
    return (
      <main id="main">
        <Notice error={auth.error}>Loading…</Notice>
      </main>
    );
  return (
    <Layout path={path}>
      <Page key={`${path}:${auth.tenant ?? ''}`} path={path} />
    </Layout>
  );
}
